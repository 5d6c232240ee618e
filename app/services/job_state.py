"""The worker's writes to a job row: claim it, report progress, heartbeat, finish it.

Every write is a short transaction of its own so the API can poll progress while training runs.

A claim is a lease: the row names the worker and the attempt (`attempts`, raised by every claim) that
hold it, and every later write of that worker is conditional on both. A worker that was taken for dead
(its heartbeat went stale, the job was sent again and claimed by another) finds its next write refused,
raises LeaseLost and stops without touching the row: a job never has two live writers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.job_status import ACTIVE, JobStatus
from app.models import Job, Model, utcnow

log = logging.getLogger(__name__)

# How often a running job looks for a cancel request or a lost lease between its own reports, at most.
WATCH_SECONDS = 2.0
# A running job is taken for dead once its heartbeat is this many heartbeat periods old.
STALE_HEARTBEATS = 4


def stale_after(heartbeat_seconds: float) -> float:
    """Seconds without a heartbeat after which a running job's worker is taken for dead."""
    return STALE_HEARTBEATS * heartbeat_seconds


def model_id_for(job_id: str) -> str:
    """The id of the one model a job can make, derived from the job's: a re-run makes the same one."""
    return "mdl_" + job_id.split("_", 1)[-1]


class JobCancelled(Exception):
    """Raised inside training when a client asked for the job to stop."""


class LeaseLost(Exception):
    """Raised inside training when another worker has taken the job over: stop, touch nothing."""


@dataclass(frozen=True)
class Lease:
    """One claim of a job: the worker that holds it and the attempt it is (the fencing token)."""

    job_id: str
    worker: str
    attempt: int

    def held(self) -> ColumnElement[bool]:
        """SQL: the row is still running under this claim."""
        return (
            (Job.id == self.job_id)
            & (Job.status == JobStatus.RUNNING)
            & (Job.worker == self.worker)
            & (Job.attempts == self.attempt)
        )


def claim(sessions: sessionmaker[Session], job_id: str, worker: str, stale_after: float) -> Lease | None:
    """Mark a job running for this worker; None if it finished or another live worker has it.

    A running job whose heartbeat is older than `stale_after` seconds belonged to a worker that
    died; its redelivered task may take it over. The conditional UPDATE is the lock: of two
    claims at once, the second finds the row no longer matching and gets None.
    """
    now = utcnow()
    with sessions() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.cancel_requested.is_(False),
                or_(
                    Job.status == JobStatus.QUEUED,
                    (Job.status == JobStatus.RUNNING) & (Job.heartbeat_at < now - timedelta(seconds=stale_after)),
                ),
            )
            .values(
                status=JobStatus.RUNNING,
                worker=worker,
                attempts=Job.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                progress=None,
                history=[],
            )
        )
        if not cast(CursorResult[Any], result).rowcount:
            session.rollback()
            return None
        # Read inside the same transaction: the row is ours until the commit.
        attempt = session.scalar(select(Job.attempts).where(Job.id == job_id))
        session.commit()
        return Lease(job_id, worker, int(attempt or 1))


def holds(sessions: sessionmaker[Session], lease: Lease) -> bool:
    """Whether the row is still running under this claim."""
    with sessions() as session:
        return session.scalar(select(Job.id).where(lease.held())) is not None


class JobReporter:
    """Progress, history, heartbeat and cancellation checks for one claimed job."""

    def __init__(self, sessions: sessionmaker[Session], lease: Lease, heartbeat_seconds: float) -> None:
        self.sessions = sessions
        self.lease = lease
        self.job_id = lease.job_id
        self.history: list[dict[str, Any]] = []
        # Set when this attempt continues from a checkpoint: {"phase", "step"}; shown in every progress.
        self.resumed_from: dict[str, Any] | None = None
        self.heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"heartbeat-{lease.job_id}")

    def __enter__(self) -> JobReporter:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(timeout=5)

    def _heartbeat(self) -> None:
        # Long iterations must not look like a dead worker, so the heartbeat has its own thread. It also
        # looks for a cancel request more often than once per step, for interrupt() inside long steps.
        every = self.heartbeat_seconds
        last_beat = time.monotonic()
        while not self._stop.wait(min(every, WATCH_SECONDS)):
            try:
                if time.monotonic() - last_beat >= every * 0.99:
                    last_beat = time.monotonic()
                    self._write(heartbeat_at=utcnow())
                self._watch()
            except LeaseLost:
                return
            except Exception:  # a database hiccup: try again next tick (a long outage loses the lease)
                log.warning("job %s: heartbeat failed", self.job_id, exc_info=True)

    def _write(self, **values: Any) -> None:
        with self.sessions() as session:
            result = session.execute(update(Job).where(self.lease.held()).values(**values))
            session.commit()
        if not cast(CursorResult[Any], result).rowcount:
            self._lost.set()
            raise LeaseLost(f"job {self.job_id}: attempt {self.lease.attempt} no longer holds it")

    def _watch(self) -> bool:
        """Read the row: sets the lost and cancel flags; True when a cancel was requested."""
        with self.sessions() as session:
            row = session.execute(
                select(Job.status, Job.worker, Job.attempts, Job.cancel_requested).where(Job.id == self.job_id)
            ).one_or_none()
        held = (JobStatus.RUNNING, self.lease.worker, self.lease.attempt)
        if row is None or (row.status, row.worker, row.attempts) != held:
            self._lost.set()
            raise LeaseLost(f"job {self.job_id}: attempt {self.lease.attempt} no longer holds it")
        if row.cancel_requested:
            self._cancel.set()
        return bool(row.cancel_requested)

    def cancel_requested(self) -> bool:
        """Whether a client asked the job to stop (LeaseLost if another worker has it now)."""
        return self._watch()

    def interrupt(self) -> None:
        """For the core's interrupt hook: raise if the heartbeat thread saw a cancel or a lost lease (no I/O)."""
        if self._lost.is_set():
            raise LeaseLost(f"job {self.job_id}: attempt {self.lease.attempt} no longer holds it")
        if self._cancel.is_set():
            raise JobCancelled("cancelled by request")

    def write_history(self) -> None:
        """Store the history as it stands (after a resume restored it)."""
        self._write(history=list(self.history), heartbeat_at=utcnow())

    def report(self, progress: dict[str, Any], entry: dict[str, Any] | None) -> None:
        """Store the latest progress (and a history entry); raise JobCancelled if asked to stop."""
        if entry is not None:
            self.history.append(entry)
        if self.resumed_from is not None:
            progress = {**progress, "resumed_from": self.resumed_from}
        self._write(progress=progress, history=list(self.history), heartbeat_at=utcnow())
        if self.cancel_requested():
            raise JobCancelled("cancelled by request")


def finish(
    sessions: sessionmaker[Session], job_id: str, status: str, lease: Lease | None = None, **values: Any
) -> bool:
    """Move a job to a final status (unless it already reached one, or `lease` no longer holds it)."""
    condition = Job.status.in_(ACTIVE) if lease is None else lease.held()
    with sessions() as session:
        result = session.execute(
            update(Job).where(Job.id == job_id, condition).values(status=status, finished_at=utcnow(), **values)
        )
        session.commit()
    return bool(cast(CursorResult[Any], result).rowcount)


def succeed(sessions: sessionmaker[Session], lease: Lease, model: Model) -> bool:
    """Record the model and mark the job succeeded in one transaction; False if it was cancelled
    (or the lease was lost: then the job is another worker's to finish)."""
    with sessions() as session:
        result = session.execute(
            update(Job)
            .where(lease.held(), Job.cancel_requested.is_(False))
            .values(status=JobStatus.SUCCEEDED, model_id=model.id, finished_at=utcnow())
        )
        if not cast(CursorResult[Any], result).rowcount:
            session.rollback()
            return False
        session.add(model)
        session.commit()
        return True
