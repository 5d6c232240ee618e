"""Scheduled retraining in the production shape: PostgreSQL, Redis, and a real `unfold worker --beat` whose beat
sends the retrain check; the API (in this process) only takes events and shows what the worker decided."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from tests.helpers import metric_value, planted_csv, upload, wait_for_job
from tests.integration.conftest import unfold_process, wait_until
from tests.services import postgres_database, redis_url

pytestmark = pytest.mark.integration

SPEC = {"dim": 8, "wals": {"iterations": 6, "l2": 0.05, "unobserved_weight": 0.5}, "search": {"mode": "off"}}


def _events(users: range) -> dict[str, Any]:
    return {"events": [{"user": f"u{u}", "item": f"i{(u * 7) % 20}"} for u in users]}


def test_beat_retrains_an_alias_moves_it_and_refuses_a_worse_model(tmp_path: Path):
    with postgres_database() as db_url:
        upgrade(db_url)
        env = {
            "UNFOLD_DATABASE_URL": db_url,
            "UNFOLD_BROKER_URL": redis_url(0),
            "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "UNFOLD_VAR_DIR": str(tmp_path / "var"),
            "UNFOLD_QUEUE": f"unfold-test-{uuid.uuid4().hex[:8]}",
            "UNFOLD_RETRAIN_CHECK_SECONDS": "1",
            "UNFOLD_TORCH_THREADS": "1",
        }
        settings = Settings(
            database_url=db_url,
            broker_url=env["UNFOLD_BROKER_URL"],
            artifact_root=env["UNFOLD_ARTIFACT_ROOT"],
            queue=env["UNFOLD_QUEUE"],
            var_dir=tmp_path / "api-var",
        )
        log = tmp_path / "worker.log"
        with unfold_process(["worker", "--beat"], env, tmp_path, log), TestClient(create_app(settings)) as client:
            ds = upload(client, planted_csv(tmp_path / "p.csv", 80, 40, per_user=10)).json()["id"]
            job = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()
            job = wait_for_job(client, job["id"], timeout=60)
            assert job["status"] == "succeeded", (job, log.read_text()[-3000:])
            model = job["model_id"]
            assert client.put("/v1/aliases/prod", json={"model_id": model}).status_code == 200

            def retrains() -> list[dict[str, Any]]:
                return list(client.get("/v1/aliases/prod").json()["retrains"])

            def decided(n: int) -> bool:
                found = retrains()
                return len(found) == n and found[0]["outcome"] != "training"

            policy = {"after_events": 5, "tolerance": 0.05, "spec": {"wals": {"iterations": 2}}}
            assert client.put("/v1/aliases/prod/policy", json=policy).status_code == 200
            client.post(f"/v1/datasets/{ds}/events", json=_events(range(5)))
            wait_until(lambda: decided(1), 30, "the beat's retrain to be decided", log)
            [moved] = retrains()
            assert moved["outcome"] == "moved", moved
            alias = client.get("/v1/aliases/prod").json()
            assert alias["model_id"] == moved["new_model_id"] != model and moved["dataset_version"] == 2

            # Deliberately worse: dim 1 from scratch. The guardrail keeps the alias on the model it just moved to.
            worse = {"after_events": 5, "warm_start": False, "tolerance": 0.01, "spec": {"dim": 1}}
            assert client.put("/v1/aliases/prod/policy", json=worse).status_code == 200
            client.post(f"/v1/datasets/{ds}/events", json=_events(range(5, 10)))
            wait_until(lambda: decided(2), 30, "the worse retrain to be decided", log)
            refused = retrains()[0]
            assert refused["outcome"] == "refused", refused
            assert refused["new_value"] < refused["current_value"] * 0.99 and refused["dataset_version"] == 3
            assert client.get("/v1/aliases/prod").json()["model_id"] == moved["new_model_id"]
            scrape = client.get("/metrics").text
            assert metric_value(scrape, 'unfold_alias_retrains_total{outcome="moved"}') == 1
            assert metric_value(scrape, 'unfold_alias_retrains_total{outcome="refused"}') == 1
