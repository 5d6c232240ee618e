"""Scheduled retraining of an alias behind a guardrail: the beat's check (called directly, as the task does), the
retrain task, and what GET /v1/aliases/{name} and /metrics show of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.api.app import create_app
from app.config import Settings
from app.db import get_sessionmaker
from app.migrate import upgrade
from app.models import RetrainPolicy, utcnow
from tests.helpers import metric_value, planted_csv, upload
from workers.tasks import check_retrains, retrain_job

# A held-out split (the default), so the models carry the recall@20 the guardrail compares.
SPEC = {"dim": 8, "wals": {"iterations": 6, "l2": 0.05, "unobserved_weight": 0.5}, "search": {"mode": "off"}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    """(client, dataset id, the model "prod" points at) on planted data: 80 users, two communities."""
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ds = upload(client, planted_csv(tmp_path / "p.csv", 80, 40, per_user=10)).json()["id"]
        job = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()
        model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
        assert model is not None
        assert client.put("/v1/aliases/prod", json={"model_id": model}).status_code == 200
        yield client, ds, model


def _events(n: int) -> dict[str, Any]:
    # Users of the first community (u0..u39) touching its items (i0..i19): what the model already expects.
    return {"events": [{"user": f"u{u}", "item": f"i{(u * 7) % 20}"} for u in range(n)]}


def _alias(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/aliases/prod")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_enough_events_retrain_the_alias_and_the_guardrail_lets_it_move(served, settings):
    client, ds, model = served
    policy = client.put("/v1/aliases/prod/policy", json={"after_events": 5, "tolerance": 0.05,
                                                          "spec": {"wals": {"iterations": 2}}})  # fmt: skip
    assert policy.status_code == 200, policy.text
    shown = policy.json()
    assert (shown["after_events"], shown["every_minutes"], shown["warm_start"]) == (5, None, True)
    sent: list[str] = []
    client.post(f"/v1/datasets/{ds}/events", json=_events(4))
    assert check_retrains(settings, sent.append) == [] and sent == []  # 4 events: not yet

    client.post(f"/v1/datasets/{ds}/events", json=_events(1))
    started = check_retrains(settings, sent.append)
    assert len(started) == 1 and len(sent) == 1
    # The pending events were folded into version 2, which the job trains on, warm-started from the alias's model.
    versions = client.get(f"/v1/datasets/{ds}/versions").json()["items"]
    assert (versions[0]["version"], versions[0]["n_events"]) == (2, 5)
    job = client.get(f"/v1/jobs/{sent[0]}").json()
    assert (job["status"], job["spec"]["dataset_version"], job["spec"]["warm_start"]) == ("queued", 2, model)
    assert job["spec"]["wals"]["iterations"] == 2 and job["spec"]["evaluation"]["split"] == "random"
    [training] = _alias(client)["retrains"]
    assert (training["outcome"], training["job_id"], training["trigger"]) == ("training", sent[0], "events")
    # While it trains, another check starts nothing (one retrain per alias at a time).
    assert check_retrains(settings, sent.append) == [] and len(sent) == 1

    retrain_job(settings, sent[0])  # the worker's task: train, then the guardrail
    alias = _alias(client)
    [done] = alias["retrains"]
    new_model = client.get(f"/v1/jobs/{sent[0]}").json()["model_id"]
    assert done["outcome"] == "moved", done
    assert alias["model_id"] == done["new_model_id"] == new_model != model
    assert done["current_model_id"] == model and done["dataset_version"] == 2
    assert done["new_value"] >= done["current_value"] * (1 - 0.05)
    assert done["current_value"] == client.get(f"/v1/models/{model}").json()["metrics"]["recall@20"]
    assert alias["policy"]["events_through"] == versions[0]["events_through"]
    # Queries through the alias answer from the new model; a later check has nothing new to do.
    assert client.get("/v1/models/prod/users/u1/recommendations?k=3").json()["model_id"] == new_model
    assert check_retrains(settings, sent.append) == []
    scrape = client.get("/metrics").text
    assert metric_value(scrape, 'unfold_alias_retrains_total{outcome="moved"}') == 1
    assert metric_value(scrape, 'unfold_alias_retrains_total{outcome="refused"}') == 0


def test_a_worse_retrain_is_refused_and_the_alias_stays(served, settings):
    client, ds, model = served
    # Deliberately worse: dim 1, from scratch; on a schedule of every minute.
    body = {"every_minutes": 1, "warm_start": False, "tolerance": 0.01, "spec": {"dim": 1}}
    assert client.put("/v1/aliases/prod/policy", json=body).status_code == 200
    assert check_retrains(settings) == []  # a minute has not passed
    sessions = get_sessionmaker(settings.resolved_database_url)
    with sessions() as session:
        session.execute(update(RetrainPolicy).values(updated_at=utcnow() - timedelta(minutes=2)))
        session.commit()
    assert check_retrains(settings) == []  # due, but the model has seen every interaction there is
    client.post(f"/v1/datasets/{ds}/events", json=_events(3))
    [started] = check_retrains(settings)  # eager settings: the job trains and is decided inline

    alias = _alias(client)
    [refused] = alias["retrains"]
    assert refused["id"] == started and refused["trigger"] == "schedule"
    assert refused["outcome"] == "refused", refused
    assert alias["model_id"] == model == refused["current_model_id"]
    new = client.get(f"/v1/models/{refused['new_model_id']}").json()
    assert new["dim"] == 1 and new["metrics"]["recall@20"] == refused["new_value"]
    assert refused["new_value"] < refused["current_value"] * 0.99
    assert "below the current model's" in refused["reason"] and "tolerance of 1.0%" in refused["reason"]
    assert client.get("/v1/models/prod/users/u1/recommendations?k=3").json()["model_id"] == model
    scrape = client.get("/metrics").text
    assert metric_value(scrape, 'unfold_alias_retrains_total{outcome="refused"}') == 1
    assert metric_value(scrape, 'unfold_alias_retrains_total{outcome="moved"}') == 0


def test_a_policy_is_validated_against_the_alias_model_and_can_be_removed(served):
    client, _, _ = served
    assert _alias(client)["policy"] is None and _alias(client)["retrains"] == []
    assert client.get("/v1/aliases/prod/policy").status_code == 404
    no_trigger = client.put("/v1/aliases/prod/policy", json={"tolerance": 0.1})
    assert no_trigger.status_code == 422 and "every_minutes" in no_trigger.text
    owned = client.put("/v1/aliases/prod/policy", json={"after_events": 5, "spec": {"dataset_id": "ds_x"}})
    assert owned.status_code == 422 and "set by the policy" in owned.text
    typo = client.put("/v1/aliases/prod/policy", json={"after_events": 5, "spec": {"wals": {"l2_reg": 1}}})
    assert typo.status_code == 422 and typo.json()["field"] == "spec.wals.l2_reg"
    assert client.put("/v1/aliases/nope/policy", json={"after_events": 5}).status_code == 404
    assert client.put("/v1/aliases/prod/policy", json={"after_events": 5}).status_code == 200
    assert client.get("/v1/aliases/prod/policy").json()["metric"] == "recall@20"
    assert _alias(client)["policy"]["after_events"] == 5
    assert client.put("/v1/aliases/canary", json={"model_id": "prod"}).status_code == 200
    listed = client.get("/v1/aliases").json()["items"]
    assert [(a["name"], (a["policy"] or {}).get("after_events")) for a in listed] == [("canary", None), ("prod", 5)]
    assert client.delete("/v1/aliases/prod/policy").status_code == 204
    assert _alias(client)["policy"] is None
    assert client.delete("/v1/aliases/prod/policy").status_code == 404
