"""Job event streams end once their key is revoked, and a tenant holds a bounded number of them open.

Served by uvicorn on a loopback port (a TestClient would buffer an endless stream whole).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.api.app import create_app
from app.db import get_sessionmaker
from app.services import api_keys
from tests.api.test_tenants import bearer, make_settings, new_key
from tests.helpers import planted_csv


@contextmanager
def serve(app) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def running(tmp_path: Path):
    """A server whose jobs stay queued (no worker), two tenants' keys, and one queued job of acme's."""
    settings = make_settings(tmp_path, auth_cache_seconds=0.2, stream_recheck_seconds=0.2, max_streams_per_tenant=2)
    acme_id, acme = new_key(settings, "acme")
    _, globex = new_key(settings, "globex")
    app = create_app(settings)
    app.state.enqueue = lambda job_id: None
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        with planted_csv(tmp_path / "p.csv", 20, 40).open("rb") as fh:
            ds = http.post("/v1/datasets", files={"file": ("p.csv", fh)}, headers=bearer(acme)).json()
        job = http.post("/v1/jobs", json={"dataset_id": ds["id"]}, headers=bearer(acme)).json()
        small = b"user,item\nu1,i1\nu2,i2\nu1,i2\n"
        theirs = http.post("/v1/datasets", files={"file": ("p.csv", small)}, headers=bearer(globex)).json()
        globex_job = http.post("/v1/jobs", json={"dataset_id": theirs["id"]}, headers=bearer(globex)).json()
        yield settings, http, job["id"], (acme_id, acme), globex, globex_job["id"]


def _events(response: httpx.Response) -> Iterator[str]:
    """The event names of a stream, as they arrive."""
    for line in response.iter_lines():
        if line.startswith("event: "):
            yield line.removeprefix("event: ")


def test_a_stream_ends_soon_after_its_key_is_revoked(running):
    settings, http, job, (acme_id, acme), _, _ = running
    seen: list[str] = []
    ended = threading.Event()

    def follow() -> None:
        with http.stream("GET", f"/v1/jobs/{job}/events", headers=bearer(acme)) as response:
            assert response.status_code == 200
            for name in _events(response):
                seen.append(name)
        ended.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not seen:
        assert time.monotonic() < deadline, "no first event"
        time.sleep(0.05)
    time.sleep(1.0)
    assert not ended.is_set()  # a queued job's stream stays open while the key is valid
    with get_sessionmaker(settings.resolved_database_url)() as session:
        api_keys.revoke_key(session, acme_id)
    revoked = time.monotonic()
    # Within UNFOLD_AUTH_CACHE_SECONDS + UNFOLD_STREAM_RECHECK_SECONDS + a poll (0.5 s), with room for a slow CI.
    assert ended.wait(timeout=4), f"still streaming {time.monotonic() - revoked:.1f}s after the revocation: {seen}"
    assert seen[0] == "progress" and seen[-1] == "error"


def test_a_tenant_may_hold_only_so_many_streams_open(running):
    _, http, job, (_, acme), globex, globex_job = running
    url = f"/v1/jobs/{job}/events"
    with (
        http.stream("GET", url, headers=bearer(acme)) as first,
        http.stream("GET", url, headers=bearer(acme)) as second,
    ):
        # Held in names: a dropped line iterator closes its response (httpx), which would end the stream.
        first_events, second_events = _events(first), _events(second)
        assert next(first_events) == next(second_events) == "progress"
        refused = http.get(url, headers=bearer(acme))
        assert refused.status_code == 429, refused.text
        problem = refused.json()
        assert (problem["limit"], problem["current"], problem["setting"]) == (2, 2, "UNFOLD_MAX_STREAMS_PER_TENANT")
        assert refused.headers["retry-after"]
        # Another tenant's streams are its own.
        with http.stream("GET", f"/v1/jobs/{globex_job}/events", headers=bearer(globex)) as theirs:
            assert theirs.status_code == 200
    # Closed by the client: the slots come back.
    deadline = time.monotonic() + 5
    while True:
        with http.stream("GET", url, headers=bearer(acme)) as again:
            if again.status_code == 200:
                break
        assert time.monotonic() < deadline, "the closed streams' slots never came back"
        time.sleep(0.1)
