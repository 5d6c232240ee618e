"""Events (POST /v1/datasets/{id}/events), dataset versions, and jobs that name a version or a warm start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from app.services.dataset_versions import version_key
from tests.api.test_tenants import bearer, new_key
from tests.helpers import planted_csv, upload

SPEC = {"dim": 8, "wals": {"iterations": 3}, "evaluation": {"split": "none"}, "search": {"mode": "off"}}


def _client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5, **overrides)
    upgrade(settings.resolved_database_url)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    return _client(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def api_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The API on either database: storing events is one dialect-specific INSERT ... ON CONFLICT DO NOTHING."""
    from tests.services import postgres_database

    database = postgres_database() if request.param == "postgresql" else nullcontext(None)
    with database as url, _client(tmp_path, database_url=url) as client:
        yield client


def _dataset(client: TestClient, tmp_path: Path) -> str:
    response = upload(client, planted_csv(tmp_path / "p.csv", 40, 30))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _stats(client: TestClient, ds: str) -> dict[str, Any]:
    response = client.get(f"/v1/datasets/{ds}/events")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_batch_is_stored_and_a_retry_is_not_stored_twice(api_on, tmp_path):
    api = api_on
    ds = _dataset(api, tmp_path)
    batch = {"events": [{"user": "u1", "item": "i3", "event_id": "a"}, {"user": "u2", "item": "i4", "weight": 2}]}
    first = api.post(f"/v1/datasets/{ds}/events", json=batch)
    assert first.status_code == 200, first.text
    assert (first.json()["accepted"], first.json()["duplicates"]) == (2, 0)
    # The client retries after a timeout: the event with an id is held already, the one without is new.
    again = api.post(f"/v1/datasets/{ds}/events", json=batch).json()
    assert (again["accepted"], again["duplicates"]) == (1, 1)
    # The same id twice in one batch is stored once.
    twice = {"events": [{"user": "u5", "item": "i1", "event_id": "b"}, {"user": "u6", "item": "i2", "event_id": "b"}]}
    assert api.post(f"/v1/datasets/{ds}/events", json=twice).json()["accepted"] == 1
    stats = _stats(api, ds)
    assert (stats["total"], stats["pending"], stats["latest_version"]) == (4, 4, 1)
    assert stats["last_seq"] == again["last_seq"] + 1
    # Nothing new: the answer names the dataset's latest event all the same.
    assert api.post(f"/v1/datasets/{ds}/events", json=twice).json() == {
        "dataset_id": ds,
        "accepted": 0,
        "duplicates": 2,
        "last_seq": stats["last_seq"],
    }
    assert sum(stats["per_minute"]) == 4 and len(stats["per_minute"]) == 60


def test_a_bad_event_is_named_and_nothing_of_its_batch_is_stored(api, tmp_path):
    ds = _dataset(api, tmp_path)
    batch = {"events": [{"user": "u1", "item": "i3"}, {"user": "u2", "item": "i4", "weight": -1}]}
    response = api.post(f"/v1/datasets/{ds}/events", json=batch)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == "events.1.weight"
    assert response.headers["content-type"] == "application/problem+json"
    bad_time = {"events": [{"user": "u1", "item": "i3", "timestamp": "yesterday"}]}
    assert api.post(f"/v1/datasets/{ds}/events", json=bad_time).json()["errors"][0]["field"] == "events.0.timestamp"
    nul = {"events": [{"user": "u\u0000", "item": "i3"}]}
    assert api.post(f"/v1/datasets/{ds}/events", json=nul).status_code == 422
    assert _stats(api, ds)["total"] == 0


def test_ndjson_is_stored_and_a_bad_line_is_named(api, tmp_path):
    ds = _dataset(api, tmp_path)
    ndjson = {"content-type": "application/x-ndjson"}
    lines = b'{"user": "u1", "item": "i3", "timestamp": "2026-12-07T08:00:00Z"}\n\n{"user": "u9", "item": "i9"}\n'
    response = api.post(f"/v1/datasets/{ds}/events", content=lines, headers=ndjson)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    bad = b'{"user": "u1", "item": "i3"}\n{"user": "u1"}\n'
    response = api.post(f"/v1/datasets/{ds}/events", content=bad, headers=ndjson)
    assert response.status_code == 422
    assert (response.json()["line"], response.json()["field"]) == (2, "item")
    broken = b'{"user": "u1", "item": "i3"}\n{"user": \n'
    assert api.post(f"/v1/datasets/{ds}/events", content=broken, headers=ndjson).json()["line"] == 2
    assert _stats(api, ds)["total"] == 2


def test_a_batch_over_the_limit_is_a_413(tmp_path):
    client = _client(tmp_path, max_events_per_request=3)
    ds = _dataset(client, tmp_path)
    batch = {"events": [{"user": f"u{i}", "item": "i1"} for i in range(4)]}
    response = client.post(f"/v1/datasets/{ds}/events", json=batch)
    assert response.status_code == 413
    assert (response.json()["field"], response.json()["setting"]) == ("events", "UNFOLD_MAX_EVENTS_PER_REQUEST")
    lines = b"".join(orjson.dumps(e) + b"\n" for e in batch["events"])
    ndjson = client.post(f"/v1/datasets/{ds}/events", content=lines, headers={"content-type": "application/x-ndjson"})
    assert ndjson.status_code == 413
    assert client.post(f"/v1/datasets/{ds}/events", json={"events": batch["events"][:3]}).status_code == 200


def test_another_tenants_dataset_takes_no_events(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5)
    upgrade(settings.resolved_database_url)
    _, mine = new_key(settings, "acme")
    _, theirs = new_key(settings, "globex")
    app = create_app(settings)
    owner = TestClient(app, headers=bearer(mine), raise_server_exceptions=False)
    other = TestClient(app, headers=bearer(theirs), raise_server_exceptions=False)
    ds = _dataset(owner, tmp_path)
    batch = {"events": [{"user": "u1", "item": "i3"}]}
    assert other.post(f"/v1/datasets/{ds}/events", json=batch).status_code == 404
    assert other.post(f"/v1/datasets/{ds}/versions").status_code == 404
    assert other.get(f"/v1/datasets/{ds}/versions").status_code == 404
    assert _stats(owner, ds)["total"] == 0


def test_a_version_folds_the_events_and_jobs_train_on_the_one_they_name(api, tmp_path):
    ds = _dataset(api, tmp_path)
    assert api.post(f"/v1/datasets/{ds}/versions").status_code == 409  # nothing to fold yet
    events = [{"user": "newcomer", "item": "i1"}, {"user": "newcomer", "item": "i2"}, {"user": "u1", "item": "i29"}]
    api.post(f"/v1/datasets/{ds}/events", json={"events": events})
    created = api.post(f"/v1/datasets/{ds}/versions")
    assert created.status_code == 201, created.text
    v2 = created.json()
    upload_row = api.get(f"/v1/datasets/{ds}").json()
    assert (v2["version"], v2["n_events"], v2["n_users"]) == (2, 3, upload_row["n_users"] + 1)
    assert v2["n_interactions"] >= upload_row["n_interactions"] + 2
    assert [v["version"] for v in api.get(f"/v1/datasets/{ds}/versions").json()["items"]] == [2, 1]
    assert _stats(api, ds)["pending"] == 0

    latest = api.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()
    assert latest["spec"]["dataset_version"] == 2
    first = api.post("/v1/jobs", json={"dataset_id": ds, "dataset_version": 1, **SPEC}).json()
    models = {}
    for job in (latest, first):
        done = api.get(f"/v1/jobs/{job['id']}").json()
        assert done["status"] == "succeeded", done
        models[job["spec"]["dataset_version"]] = done["model_id"]
    # Only the model of version 2 knows the newcomer.
    assert api.get(f"/v1/models/{models[2]}/users/newcomer/recommendations?k=3").status_code == 200
    assert api.get(f"/v1/models/{models[1]}/users/newcomer/recommendations?k=3&fallback=none").status_code == 404
    missing = api.post("/v1/jobs", json={"dataset_id": ds, "dataset_version": 7, **SPEC})
    assert missing.status_code == 404 and missing.json()["field"] == "dataset_version"


def test_deleting_a_dataset_deletes_its_versions(api, tmp_path):
    ds = _dataset(api, tmp_path)
    api.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "u1", "item": "i29"}]})
    api.post(f"/v1/datasets/{ds}/versions")
    store = api.app.state.store  # type: ignore[attr-defined]
    assert store.exists(version_key(ds, 2))
    assert api.delete(f"/v1/datasets/{ds}").status_code == 204
    assert not store.exists(version_key(ds, 2))
    assert api.get(f"/v1/datasets/{ds}/versions").status_code == 404


def test_a_warm_started_job_starts_from_the_model_it_names(api, tmp_path):
    ds = _dataset(api, tmp_path)
    spec = {**SPEC, "wals": {"iterations": 8, "l2": 0.05, "unobserved_weight": 0.5}}
    base = api.get(f"/v1/jobs/{api.post('/v1/jobs', json={'dataset_id': ds, **spec}).json()['id']}").json()
    api.put("/v1/aliases/prod", json={"model_id": base["model_id"]})
    api.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "u1", "item": "i2"}, {"user": "nu", "item": "i3"}]})
    api.post(f"/v1/datasets/{ds}/versions")
    one = {"dataset_id": ds, "evaluation": {"split": "none"}, "wals": {"iterations": 1}}
    warm = api.post("/v1/jobs", json={**one, "warm_start": "prod"})
    assert warm.status_code == 202, warm.text
    # The job records the model's id, its dim and the settings the spec left out; no search.
    stored = warm.json()["spec"]
    assert (stored["warm_start"], stored["dim"], stored["search"]["mode"]) == (base["model_id"], 8, "off")
    assert (stored["wals"]["l2"], stored["wals"]["unobserved_weight"], stored["wals"]["iterations"]) == (0.05, 0.5, 1)
    cold = api.post("/v1/jobs", json={**one, **{k: stored[k] for k in ("dim", "wals", "search")}})
    warm_job, cold_job = (api.get(f"/v1/jobs/{r.json()['id']}").json() for r in (warm, cold))
    assert warm_job["status"] == cold_job["status"] == "succeeded"
    report = api.get(f"/v1/models/{warm_job['model_id']}").json()["metrics"]["warm_start"]
    assert report == {
        "model_id": base["model_id"],
        "users_known": 40,
        "users_new": 1,
        "items_known": 30,
        "items_new": 0,
    }
    # One iteration from the trained factors is far closer to convergence than one from a random start.
    assert warm_job["history"][0]["loss"] < 0.9 * cold_job["history"][0]["loss"]


def test_a_warm_start_must_be_a_wals_model_of_the_same_dim(api, tmp_path):
    ds = _dataset(api, tmp_path)
    base = api.get(f"/v1/jobs/{api.post('/v1/jobs', json={'dataset_id': ds, **SPEC}).json()['id']}").json()
    other_dim = api.post("/v1/jobs", json={"dataset_id": ds, "dim": 16, "warm_start": base["model_id"]})
    assert other_dim.status_code == 422 and other_dim.json()["field"] == "dim"
    missing = api.post("/v1/jobs", json={"dataset_id": ds, "warm_start": "nope"})
    assert missing.status_code == 404 and missing.json()["field"] == "warm_start"
    sgd = api.post("/v1/jobs", json={"dataset_id": ds, "algorithm": "sgd", "warm_start": base["model_id"]})
    assert sgd.status_code == 422
