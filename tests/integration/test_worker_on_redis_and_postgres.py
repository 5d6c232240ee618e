"""The production shape: API → PostgreSQL + Redis → a real `unfold worker` → model → queries."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from tests.helpers import upload, wait_for_job
from tests.integration.conftest import unfold_process, wait_until
from tests.services import postgres_database, redis_url

pytestmark = pytest.mark.integration


@pytest.fixture
def production(tmp_path: Path, shared_data: Path):
    with postgres_database() as db_url:
        upgrade(db_url)
        env = {
            "UNFOLD_DATABASE_URL": db_url,
            "UNFOLD_BROKER_URL": redis_url(0),
            "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "UNFOLD_QUEUE": f"unfold-test-{uuid.uuid4().hex[:8]}",
            "UNFOLD_HEARTBEAT_SECONDS": "2",
        }
        settings = Settings(
            database_url=env["UNFOLD_DATABASE_URL"],
            broker_url=env["UNFOLD_BROKER_URL"],
            artifact_root=env["UNFOLD_ARTIFACT_ROOT"],
            queue=env["UNFOLD_QUEUE"],
            var_dir=tmp_path / "var",
        )
        log = tmp_path / "worker.log"
        with unfold_process(["worker"], env, tmp_path, log) as worker:
            wait_until(lambda: b"ready" in log.read_bytes(), 60, "the worker to be ready", log)
            with TestClient(create_app(settings)) as client:
                yield client, worker, log


def test_upload_train_poll_query_on_postgres_and_redis(production, shared_data: Path):
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

    recs = client.get(f"/v1/models/{model['id']}/users/1/recommendations", params={"k": 10}).json()["items"]
    assert len(recs) == 10
    seen_by_1 = {
        line.split("\t")[1]
        for line in (shared_data / "ml-100k" / "u.data").read_text().splitlines()
        if line.split("\t")[0] == "1"
    }
    assert not {x["item"] for x in recs} & seen_by_1


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
