"""Server-sent events of one job: poll its row, send what changed, end with the final job.

The stream is text/event-stream: `event: progress` whenever the job's status or progress changes
(data `{"id", "status", "progress"}`), then `event: end` with the whole job once it is succeeded,
failed or cancelled, then the stream closes. A comment line keeps idle connections (and proxies)
alive. Each poll opens and closes its own session, so a long stream holds no connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from app.models import Job
from app.services.jobs import FINISHED, get_job

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0

# The job as JSON (the API's job schema); raises NotFound once the job is gone.
Snapshot = Callable[[], dict[str, Any]]


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
) -> AsyncIterator[str]:
    """Yield SSE messages for one job until it ends; `first` is a snapshot already taken."""
    poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
    keepalive_seconds = KEEPALIVE_SECONDS if keepalive_seconds is None else keepalive_seconds
    sent: tuple[Any, Any] | None = None
    event_id = 0
    last_write = time.monotonic()
    job = first
    while True:
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
