"""Server-sent events of one job: poll its row, send what changed, end with the final job.

The stream is text/event-stream: `event: progress` whenever the job's status or progress changes
(data `{"id", "status", "progress"}`), then `event: end` with the whole job once it is succeeded,
failed or cancelled, then the stream closes. A comment line keeps idle connections (and proxies)
alive. Each poll opens and closes its own session, so a long stream holds no connection.

A stream may outlive the key that opened it: every `recheck_seconds` it asks `allowed()` again (the
caller's key still valid, for the same tenant) and, once not, sends `event: error` (a 401 problem)
and closes. Each tenant may hold a bounded number of streams open per process (StreamSlots): they
poll the database, so an unbounded number would slow every other request of that process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from app.errors import TooManyRequests
from app.job_status import FINISHED
from app.models import Job
from app.services.jobs import get_job

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 5.0
REVOKED = {
    "type": "about:blank",
    "title": "Unauthorized",
    "status": 401,
    "detail": "the API key of this stream is no longer valid (revoked, or moved to another tenant)",
}

# The job as JSON (the API's job schema); raises NotFound once the job is gone.
Snapshot = Callable[[], dict[str, Any]]


class StreamSlots:
    """How many event streams each tenant holds open in this process, up to `per_tenant`."""

    def __init__(self, per_tenant: int, setting: str = "UNFOLD_MAX_STREAMS_PER_TENANT") -> None:
        self.per_tenant = per_tenant
        self.setting = setting
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, tenant: str) -> None:
        """Take a slot for `tenant`; TooManyRequests (429) when all of its slots are taken."""
        with self._lock:
            current = self._open.get(tenant, 0)
            if current >= self.per_tenant:
                raise TooManyRequests(
                    f"{current} event streams are already open for this tenant, the limit of {self.per_tenant} "
                    f"(set by {self.setting}); close one, or poll GET /v1/jobs/{{id}}",
                    retry_after=int(KEEPALIVE_SECONDS),
                    limit=self.per_tenant,
                    current=current,
                    setting=self.setting,
                )
            self._open[tenant] = current + 1

    def release(self, tenant: str) -> None:
        with self._lock:
            left = self._open.get(tenant, 0) - 1
            if left > 0:
                self._open[tenant] = left
            else:
                self._open.pop(tenant, None)

    def open(self, tenant: str) -> int:
        return self._open.get(tenant, 0)


def read_job(sessions: sessionmaker[Session], job_id: str, *, tenant: str) -> Job:
    """The job row of `tenant`, read in a session of its own that is closed before returning."""
    with sessions() as session:
        return get_job(session, job_id, tenant=tenant)


def format_event(event: str, data: Any, event_id: int | None = None) -> str:
    """One SSE message; the JSON is compact, so it always fits a single `data:` line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def job_events(
    snapshot: Snapshot,
    first: dict[str, Any] | None = None,
    *,
    poll_seconds: float | None = None,
    keepalive_seconds: float | None = None,
    allowed: Callable[[], bool] | None = None,
    recheck_seconds: float | None = None,
) -> AsyncIterator[str]:
    """Yield SSE messages for one job until it ends; `first` is a snapshot already taken.

    `allowed` (blocking: it may read the database) says whether the caller may still follow the job.
    """
    poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
    keepalive_seconds = KEEPALIVE_SECONDS if keepalive_seconds is None else keepalive_seconds
    recheck_seconds = RECHECK_SECONDS if recheck_seconds is None else recheck_seconds
    sent: tuple[Any, Any] | None = None
    event_id = 0
    last_write = last_check = time.monotonic()
    job = first
    while True:
        if allowed is not None and time.monotonic() - last_check >= recheck_seconds:
            last_check = time.monotonic()
            if not await anyio.to_thread.run_sync(allowed):
                yield format_event("error", REVOKED, event_id + 1)
                return
        if job is None:
            # The database read blocks: keep it off the event loop.
            job = await anyio.to_thread.run_sync(snapshot)
        state = (job["status"], job["progress"])
        if state != sent:
            sent = state
            event_id += 1
            change = {"id": job["id"], "status": job["status"], "progress": job["progress"]}
            yield format_event("progress", change, event_id)
            last_write = time.monotonic()
        if job["status"] in FINISHED:
            yield format_event("end", job, event_id + 1)
            return
        if time.monotonic() - last_write >= keepalive_seconds:
            yield ": keep-alive\n\n"
            last_write = time.monotonic()
        job = None
        await anyio.sleep(poll_seconds)
