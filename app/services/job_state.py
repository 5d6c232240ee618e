"""The worker's writes to a job row: claim it, report progress, heartbeat, finish it.

Every write is a short transaction of its own so the API can poll progress while training runs.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import Job, Model, utcnow


class JobCancelled(Exception):
    """Raised inside training when a client asked for the job to stop."""


def claim(sessions: sessionmaker[Session], job_id: str, worker: str, stale_after: float) -> bool:
    """Mark a job running for this worker; False if it finished or another live worker has it.

    A running job whose heartbeat is older than `stale_after` seconds belonged to a worker that
    died; its redelivered task may take it over.
    """
    now = utcnow()
    with sessions() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.cancel_requested.is_(False),
                or_(
                    Job.status == "queued",
                    (Job.status == "running") & (Job.heartbeat_at < now - timedelta(seconds=stale_after)),
                ),
            )
            .values(
                status="running",
                worker=worker,
                attempts=Job.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                progress=None,
                history=[],
            )
        )
        session.commit()
        return bool(cast(CursorResult[Any], result).rowcount)


class JobReporter:
    """Progress, history and cancellation checks for one running job."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, heartbeat_seconds: float) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.history: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_seconds,), daemon=True)

    def __enter__(self) -> JobReporter:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(timeout=5)

    def _heartbeat(self, every: float) -> None:
        # Long iterations must not look like a dead worker, so the heartbeat has its own thread.
        while not self._stop.wait(every):
            self._write(heartbeat_at=utcnow())

    def _write(self, **values: Any) -> None:
        with self.sessions() as session:
            session.execute(update(Job).where(Job.id == self.job_id).values(**values))
            session.commit()

    def cancel_requested(self) -> bool:
        with self.sessions() as session:
            return bool(session.get(Job, self.job_id, populate_existing=True).cancel_requested)  # type: ignore[union-attr]

    def report(self, progress: dict[str, Any], entry: dict[str, Any] | None) -> None:
        """Store the latest progress (and a history entry); raise JobCancelled if asked to stop."""
        if entry is not None:
            self.history.append(entry)
        self._write(progress=progress, history=list(self.history), heartbeat_at=utcnow())
        if self.cancel_requested():
            raise JobCancelled("cancelled by request")


def finish(sessions: sessionmaker[Session], job_id: str, status: str, **values: Any) -> None:
    """Move a job to a final status (unless it already reached one)."""
    with sessions() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(("queued", "running")))
            .values(status=status, finished_at=utcnow(), **values)
        )
        session.commit()


def succeed(sessions: sessionmaker[Session], job_id: str, model: Model) -> bool:
    """Record the model and mark the job succeeded in one transaction; False if it was cancelled."""
    with sessions() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
            .values(status="succeeded", model_id=model.id, finished_at=utcnow())
        )
        if not cast(CursorResult[Any], result).rowcount:
            session.rollback()
            return False
        session.add(model)
        session.commit()
        return True
