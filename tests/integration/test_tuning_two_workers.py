"""A tuning run on the production shape: two real `unfold worker`s share the trials over Redis and
PostgreSQL, the last trial's join submits the final job, and its model answers queries."""

from __future__ import annotations

import socket
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.job_status import FINISHED
from app.migrate import upgrade
from tests.helpers import planted_csv, upload
from tests.integration.conftest import unfold_process, wait_until
from tests.services import postgres_database, redis_url

pytestmark = pytest.mark.integration

WORKERS = ("tune-a", "tune-b")


def test_a_tuning_run_uses_both_workers_and_yields_a_model(tmp_path: Path):
    suffix = uuid.uuid4().hex[:6]
    names = [f"{w}-{suffix}@{socket.gethostname()}" for w in WORKERS]
    with postgres_database() as db_url, ExitStack() as stack:
        upgrade(db_url)
        env = {
            "UNFOLD_DATABASE_URL": db_url,
            "UNFOLD_BROKER_URL": redis_url(0),
            "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "UNFOLD_QUEUE": f"unfold-tuning-{suffix}",
            "UNFOLD_HEARTBEAT_SECONDS": "2",
            "UNFOLD_TORCH_THREADS": "1",
        }
        logs = [tmp_path / f"{w}.log" for w in WORKERS]
        for name, log in zip(names, logs, strict=True):
            stack.enter_context(unfold_process(["worker", "--name", name], env, tmp_path, log))
        for log in logs:
            wait_until(lambda log=log: b"ready" in log.read_bytes(), 60, f"{log.stem} to be ready", log)
        settings = Settings(
            database_url=db_url,
            broker_url=env["UNFOLD_BROKER_URL"],
            artifact_root=env["UNFOLD_ARTIFACT_ROOT"],
            queue=env["UNFOLD_QUEUE"],
            var_dir=tmp_path / "var",
        )
        client = stack.enter_context(TestClient(create_app(settings)))
        ds = upload(client, planted_csv(tmp_path / "p.csv", n_users=400, n_items=100, per_user=15)).json()["id"]
        grid = {"wals.l2": [0.1, 1.0, 10.0], "wals.unobserved_weight": [0.01, 0.1]}
        spec = {"dataset_id": ds, "dim": 8, "wals": {"iterations": 8}}
        r = client.post("/v1/tuning", json={"spec": spec, "search": {"method": "grid", "params": grid}})
        assert r.status_code == 202, r.text
        location = r.headers["location"]

        def finished() -> bool:
            return client.get(location).json()["status"] in FINISHED

        wait_until(finished, 120, "the tuning run to finish", logs[0])
        run = client.get(location).json()
        tails = "\n".join(log.read_text(errors="replace")[-2000:] for log in logs)
        assert run["status"] == "succeeded", (run, tails)
        board = run["leaderboard"]
        assert len(board) == 6 and all(t["status"] == "succeeded" for t in board)
        # Each trial's job was claimed by a worker, recorded as "<celery node name>:<pid>".
        assert {t["worker"].rsplit(":", 1)[0] for t in board} == set(names), board
        assert run["progress"]["trials_done"] == 6 and run["best"]["params"] == board[0]["params"]

        model = client.get(f"/v1/models/{run['model_id']}").json()
        assert model["job_id"] == run["final_job_id"]
        assert model["spec"]["wals"]["l2"] == run["best"]["params"]["wals.l2"]
        final = client.get(f"/v1/jobs/{run['final_job_id']}").json()
        assert final["status"] == "succeeded" and final["kind"] == "train"
        recs = client.get(f"/v1/models/{run['model_id']}/users/u0/recommendations", params={"k": 5}).json()
        assert len(recs["items"]) == 5
        # u0 belongs to the first community (items i0..i49): the tuned model keeps to it.
        assert all(int(x["item"][1:]) < 50 for x in recs["items"]), recs
