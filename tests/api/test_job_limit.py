"""Concurrent training jobs per tenant: 429 beyond UNFOLD_MAX_CONCURRENT_JOBS, a tuning run counting one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.db import get_sessionmaker
from app.errors import TooManyRequests
from app.limits import Limits
from app.models import Dataset
from app.services import jobs, quotas
from app.spec import TrainingSpec
from tests.api.test_tenants import Recorder, as_tenant, make_settings, new_key
from tests.helpers import planted_csv, upload

LIMIT = 2


@pytest.fixture
def app(tmp_path: Path):
    """An app whose jobs stay queued (nothing is sent to a worker) and whose tuning trials are not run."""
    app = create_app(make_settings(tmp_path, max_concurrent_jobs=LIMIT))
    app.state.enqueue = lambda job_id: None
    app.state.tuning_dispatch = Recorder()
    return app


def _dataset(client: TestClient, tmp_path: Path, name: str) -> str:
    r = upload(client, planted_csv(tmp_path / f"{name}.csv"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_jobs_beyond_the_limit_are_429_with_the_limit_and_count_and_a_retry_after(app, tmp_path: Path):
    settings = app.state.settings
    acme = as_tenant(app, new_key(settings, "acme")[1])
    globex = as_tenant(app, new_key(settings, "globex")[1])
    ds = _dataset(acme, tmp_path, "a")
    accepted = [acme.post("/v1/jobs", json={"dataset_id": ds}) for _ in range(LIMIT)]
    assert [r.status_code for r in accepted] == [202] * LIMIT
    refused = acme.post("/v1/jobs", json={"dataset_id": ds})
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) > 0
    problem = refused.json()
    assert problem["limit"] == LIMIT and problem["current"] == LIMIT
    assert f"already has {LIMIT} training jobs" in problem["detail"] and f"the limit is {LIMIT}" in problem["detail"]
    assert "UNFOLD_MAX_CONCURRENT_JOBS" in problem["detail"]
    # Nothing was recorded for the refused job.
    assert len(acme.get("/v1/jobs").json()["items"]) == LIMIT
    # The limit is per tenant.
    assert globex.post("/v1/jobs", json={"dataset_id": _dataset(globex, tmp_path, "g")}).status_code == 202
    # A job that ends frees its place.
    assert acme.post(f"/v1/jobs/{accepted[0].json()['id']}/cancel").json()["status"] == "cancelled"
    assert acme.post("/v1/jobs", json={"dataset_id": ds}).status_code == 202
    assert acme.post("/v1/jobs", json={"dataset_id": ds}).status_code == 429


def test_a_tuning_run_counts_as_one_whatever_its_trials(app, tmp_path: Path):
    client = TestClient(app, raise_server_exceptions=False)  # no keys: the tenant "default"
    ds = _dataset(client, tmp_path, "d")
    search = {"params": {"wals.l2": [0.01, 0.1, 1.0, 10.0]}}  # four trial jobs, queued
    run = client.post("/v1/tuning", json={"spec": {"dataset_id": ds}, "search": search})
    assert run.status_code == 202, run.text
    assert client.post("/v1/jobs", json={"dataset_id": ds}).status_code == 202
    assert client.post("/v1/jobs", json={"dataset_id": ds}).status_code == 429
    refused = client.post("/v1/tuning", json={"spec": {"dataset_id": ds}, "search": search})
    assert refused.status_code == 429 and refused.json()["current"] == LIMIT
    assert len(client.get("/v1/tuning").json()["items"]) == 1
    assert client.post(f"/v1/tuning/{run.json()['id']}/cancel").json()["status"] == "cancelled"
    assert client.post("/v1/jobs", json={"dataset_id": ds}).status_code == 202


def _race(url: str, dataset_id: str, limit: int, submitters: int) -> None:
    """Submissions arriving at the same moment: exactly `limit` of them are admitted."""
    sessions = get_sessionmaker(url)
    barrier = threading.Barrier(submitters)
    outcomes: list[str] = []

    def submit() -> None:
        with sessions() as session:
            barrier.wait()
            try:
                jobs.submit_job(
                    session,
                    TrainingSpec(dataset_id=dataset_id),
                    lambda job_id: None,
                    Limits(),
                    tenant="acme",
                    max_concurrent_jobs=limit,
                )
                outcomes.append("admitted")
            except TooManyRequests:
                outcomes.append("refused")

    threads = [threading.Thread(target=submit) for _ in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["admitted"] * limit + ["refused"] * (submitters - limit), outcomes
    with sessions() as session:
        assert quotas.active_work(session, "acme") == limit


def _dataset_row(url: str) -> str:
    with get_sessionmaker(url)() as session:
        session.add(
            Dataset(
                id="ds_race",
                tenant="acme",
                name="race",
                format="csv",
                n_users=1,
                n_items=1,
                n_interactions=1,
                density=1.0,
                checksum="0" * 64,
                size_bytes=1,
                artifact_key="datasets/ds_race",
            )
        )
        session.commit()
    return "ds_race"


def test_simultaneous_submissions_never_overshoot_the_limit_on_sqlite(tmp_path: Path):
    url = make_settings(tmp_path).resolved_database_url
    _race(url, _dataset_row(url), limit=3, submitters=12)


@pytest.mark.integration
def test_simultaneous_submissions_never_overshoot_the_limit_on_postgresql():
    from app.migrate import upgrade
    from tests.services import postgres_database

    with postgres_database() as url:
        upgrade(url)
        _race(url, _dataset_row(url), limit=3, submitters=12)
