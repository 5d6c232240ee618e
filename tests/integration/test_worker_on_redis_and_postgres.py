"""The production shape: API → PostgreSQL + Redis → a real `unfold worker` → model → queries."""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from app.services.models import model_key
from app.storage.s3 import S3ArtifactStore
from tests.helpers import metric_value, upload, wait_for_job
from tests.integration.conftest import unfold_process, wait_until
from tests.s3 import CREDENTIALS, REGION, create_bucket, s3_server
from tests.services import postgres_database, redis_url

pytestmark = pytest.mark.integration


@pytest.fixture
def production(request: pytest.FixtureRequest, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    """API (in this process) + `unfold worker` over Redis and PostgreSQL; artifacts in a local
    folder, or with param "s3" in a bucket of an S3 server, each process with its own cache."""
    with postgres_database() as db_url, ExitStack() as stack:
        upgrade(db_url)
        env = {
            "UNFOLD_DATABASE_URL": db_url,
            "UNFOLD_BROKER_URL": redis_url(0),
            "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "UNFOLD_QUEUE": f"unfold-test-{uuid.uuid4().hex[:8]}",
            "UNFOLD_HEARTBEAT_SECONDS": "2",
        }
        if getattr(request, "param", "local") == "s3":
            for name, value in CREDENTIALS.items():
                monkeypatch.setenv(name, value)
            endpoint = stack.enter_context(s3_server())
            env |= CREDENTIALS | {
                "UNFOLD_ARTIFACT_ROOT": f"s3://{create_bucket(endpoint)}/unfold",
                "UNFOLD_S3_ENDPOINT_URL": endpoint,
                "UNFOLD_S3_REGION": REGION,
                "UNFOLD_VAR_DIR": str(tmp_path / "worker-var"),
            }
        settings = Settings(
            database_url=env["UNFOLD_DATABASE_URL"],
            broker_url=env["UNFOLD_BROKER_URL"],
            artifact_root=env["UNFOLD_ARTIFACT_ROOT"],
            s3_endpoint_url=env.get("UNFOLD_S3_ENDPOINT_URL"),
            s3_region=env.get("UNFOLD_S3_REGION"),
            queue=env["UNFOLD_QUEUE"],
            var_dir=tmp_path / "var",
        )
        log = tmp_path / "worker.log"
        with unfold_process(["worker"], env, tmp_path, log) as worker:
            wait_until(lambda: b"ready" in log.read_bytes(), 60, "the worker to be ready", log)
            with TestClient(create_app(settings)) as client:
                yield client, worker, log


@pytest.mark.parametrize("production", ["local", "s3"], indirect=True)
def test_upload_train_poll_query_on_postgres_and_redis(
    production, shared_data: Path, tmp_path: Path, request: pytest.FixtureRequest
):
    client, worker, log = production
    assert client.get("/readyz").status_code == 200
    ds = upload(client, shared_data / "ml-100k" / "u.data", name="ml-100k").json()
    assert (ds["n_users"], ds["n_items"], ds["n_interactions"]) == (943, 1682, 100_000)

    r = client.post("/v1/jobs", json={"dataset_id": ds["id"], "algorithm": "wals", "wals": {"iterations": 6}})
    assert r.status_code == 202
    job = wait_for_job(client, r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", (job, log.read_text()[-3000:])
    assert worker.poll() is None
    assert len([h for h in job["history"] if h["phase"] == "fit"]) == 6
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["metrics"]["recall@20"] > model["metrics"]["baseline"]["popularity"]["recall@20"]
    # Training time in /metrics is summed by the database itself (PostgreSQL's interval arithmetic here).
    text = client.get("/metrics").text
    assert metric_value(text, 'unfold_training_runs_total{status="succeeded"}') >= 1
    assert metric_value(text, 'unfold_training_seconds_total{status="succeeded"}') > 0

    recs = client.get(f"/v1/models/{model['id']}/users/1/recommendations", params={"k": 10}).json()["items"]
    assert len(recs) == 10
    seen_by_1 = {
        line.split("\t")[1]
        for line in (shared_data / "ml-100k" / "u.data").read_text().splitlines()
        if line.split("\t")[0] == "1"
    }
    assert not {x["item"] for x in recs} & seen_by_1
    store = client.app.state.store
    assert store.exists(f"datasets/{ds['id']}") and store.exists(model_key(model["id"]))
    assert isinstance(store, S3ArtifactStore) == (request.node.callspec.params["production"] == "s3")
    if isinstance(store, S3ArtifactStore):  # nothing went through a shared folder
        assert not (tmp_path / "artifacts").exists()
        assert (tmp_path / "worker-var" / "s3-cache" / "datasets" / ds["id"]).is_dir()  # the worker downloaded it
        assert (tmp_path / "var" / "s3-cache" / "models" / model["id"]).is_dir()  # and the API the model


def test_cancel_a_running_job_on_the_worker(production, shared_data: Path):
    client, _, log = production
    ds = upload(client, shared_data / "ml-100k" / "u.data").json()
    spec = {"dataset_id": ds["id"], "dim": 128, "wals": {"iterations": 1000, "solver": "cholesky"}}
    job = client.post("/v1/jobs", json=spec).json()
    wait_until(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running", 60, "running", log)
    wait_until(
        lambda: (client.get(f"/v1/jobs/{job['id']}").json()["progress"] or {}).get("step", 0) >= 1,
        120,
        "a first iteration",
        log,
    )
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    final = wait_for_job(client, job["id"], timeout=120)
    assert final["status"] == "cancelled" and final["model_id"] is None
    assert final["progress"]["step"] < 1000
