"""Everything at once against the production shape: `unfold api` (two processes) on a fresh PostgreSQL
database, Redis as the broker and one real `unfold worker`, while 20 uploads, 50 job submissions and
a query load on an existing model run in parallel threads.

No request may fail except job submissions refused with 429 by the per-tenant job limit, and the
database must agree with what the clients were told: 20 new datasets, one job row per accepted
submission and none for a refused one, each job queued, running or succeeded (then cancelled, so
the test need not wait for 50 trainings).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.migrate import upgrade
from tests.helpers import planted_csv, wait_for_job
from tests.integration.conftest import free_port, unfold_process, wait_until
from tests.services import postgres_database, redis_url

pytestmark = pytest.mark.integration

UPLOADS = 20
SUBMISSIONS = 50
JOB_LIMIT = 30  # UNFOLD_MAX_CONCURRENT_JOBS: some of the 50 submissions are refused with 429


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def stack(tmp_path: Path):
    """`unfold api` and `unfold worker` as real processes over PostgreSQL and Redis; yields a client."""
    with postgres_database() as db_url:
        upgrade(db_url)
        port = free_port()
        env = {
            "UNFOLD_DATABASE_URL": db_url,
            "UNFOLD_BROKER_URL": redis_url(0),
            "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "UNFOLD_QUEUE": f"unfold-test-{uuid.uuid4().hex[:8]}",
            "UNFOLD_PORT": str(port),
            "UNFOLD_API_WORKERS": "2",
            "UNFOLD_MAX_CONCURRENT_JOBS": str(JOB_LIMIT),
        }
        api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
        with (
            unfold_process(["api"], env, tmp_path, api_log),
            unfold_process(["worker"], env, tmp_path, worker_log),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
        ):
            wait_until(lambda: _ready(client), 60, "the API to be ready", api_log)
            wait_until(lambda: b"ready" in worker_log.read_bytes(), 60, "the worker to be ready", worker_log)
            yield client, api_log, worker_log


def _upload(client: httpx.Client, path: Path, name: str) -> httpx.Response:
    with path.open("rb") as fh:
        return client.post("/v1/datasets", files={"file": (path.name, fh)}, data={"name": name})


def test_uploads_jobs_and_queries_at_once(stack, tmp_path: Path):
    client, api_log, worker_log = stack
    started = time.monotonic()
    # An existing model for the query load, trained by the worker before the storm.
    base = _upload(client, planted_csv(tmp_path / "base.csv", 60, 40), "base").json()
    job = client.post("/v1/jobs", json={"dataset_id": base["id"], "dim": 8, "wals": {"iterations": 2}}).json()
    job = wait_for_job(client, job["id"], timeout=60)
    assert job["status"] == "succeeded", (job, worker_log.read_text()[-3000:])
    model = job["model_id"]
    files = [planted_csv(tmp_path / f"d{i}.csv", 40, 30, per_user=8, seed=i) for i in range(UPLOADS)]

    stop = threading.Event()
    answers: dict[str, list[httpx.Response]] = {"upload": [], "submit": [], "query": []}

    def upload(i: int) -> None:
        answers["upload"].append(_upload(client, files[i], f"storm-{i}"))

    def submit(i: int) -> None:
        spec = {"dataset_id": base["id"], "dim": 4, "seed": i, "wals": {"iterations": 2}}
        answers["submit"].append(client.post("/v1/jobs", json=spec))

    def query(user: int) -> None:
        while not stop.is_set():
            url = f"/v1/models/{model}/users/u{user}/recommendations"
            answers["query"].append(client.get(url, params={"k": 5}))

    with ThreadPoolExecutor(max_workers=24) as pool:
        queries = [pool.submit(query, u) for u in range(4)]
        work = [pool.submit(upload, i) for i in range(UPLOADS)] + [pool.submit(submit, i) for i in range(SUBMISSIONS)]
        for future in work:
            future.result()
        stop.set()
        for future in queries:
            future.result()

    # Every answer is a success, except submissions over the tenant's job limit.
    statuses = {kind: Counter(r.status_code for r in rs) for kind, rs in answers.items()}
    assert statuses["upload"] == {201: UPLOADS}, (statuses, api_log.read_text()[-3000:])
    assert set(statuses["submit"]) <= {202, 429}, statuses
    assert sum(statuses["submit"].values()) == SUBMISSIONS
    assert set(statuses["query"]) == {200} and statuses["query"][200] >= 20, statuses
    for r in answers["submit"]:
        if r.status_code == 429:
            assert r.headers["content-type"] == "application/problem+json" and "Retry-After" in r.headers
    assert all(len(r.json()["items"]) == 5 for r in answers["query"])

    # The database agrees with what the clients were told.
    datasets = _all(client, "/v1/datasets")
    storm = {d["id"] for d in datasets if d["name"].startswith("storm-")}
    assert storm == {r.json()["id"] for r in answers["upload"]} and len(storm) == UPLOADS
    accepted = {r.json()["id"] for r in answers["submit"] if r.status_code == 202}
    assert accepted, statuses
    jobs = {j["id"]: j for j in _all(client, "/v1/jobs") if j["id"] != job["id"]}
    assert set(jobs) == accepted  # one row per accepted submission, none for a refused one
    assert {j["status"] for j in jobs.values()} <= {"queued", "running", "succeeded"}, Counter(
        j["status"] for j in jobs.values()
    )

    # Cancel what has not run yet (a job that has already succeeded answers 409); every job ends
    # cancelled or succeeded, none failed.
    for job_id in accepted:
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code in (202, 409)
    finals = {job_id: wait_for_job(client, job_id, timeout=60)["status"] for job_id in accepted}
    assert set(finals.values()) <= {"cancelled", "succeeded"}, Counter(finals.values())
    print(
        f"uploads {statuses['upload']}, submissions {statuses['submit']}, {statuses['query'][200]} queries, "
        f"jobs {Counter(finals.values())}, {time.monotonic() - started:.1f} s"
    )


def _all(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(path, params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items
