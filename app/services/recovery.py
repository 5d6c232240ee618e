"""Jobs whose worker died and jobs whose message the broker lost: found in the database, sent again.

Jobs live in the database; a broker message only says "look at job X". Every worker runs `recover()`
every few seconds (workers/recovery.py), and it does two things:

- **Reaper.** A running job whose heartbeat is older than `stale_after` lost its worker (killed, out of
  memory, host gone; acks_late messages of a killed worker come back only after the broker's visibility
  timeout). It goes back to `queued` and is sent again; the next claim is attempt n+1 and resumes from
  the job's checkpoint. Once `max_attempts` claims have died the job fails with "worker lost N times"
  instead, and a dead job with a cancel request ends cancelled.
- **Reconciler.** A queued job that has waited `requeue_after` seconds since it was created or last
  sent, while this worker had a free slot, has most likely lost its message (Redis restarted without
  persistence, a send that failed): it is sent again. Only an idle worker does this — a busy fleet
  would not take a message any sooner — so a long queue behind busy workers is not flooded.

Every change is a conditional UPDATE that names what was read (status, attempts, heartbeat), so of
several workers running this at once exactly one acts on each job. Sending twice is harmless: the claim
lets one delivery run the job and skips the others; a job never runs twice at the same time.
For a queued job, `heartbeat_at` is when it was last sent (it has no worker to beat for it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.job_status import JobStatus
from app.models import Job, utcnow
from app.services import checkpoints, job_state, tuning
from app.services.models import model_key
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

# What a job's message runs: a training job, a tuning trial, or a tuning run's final retrain.
TASK_KINDS = ("train", "trial", "final")


class Send(Protocol):
    """Puts one job's message on the queue: send(job_id, kind), kind one of TASK_KINDS."""

    def __call__(self, job_id: str, kind: str) -> None: ...


@dataclass
class Recovered:
    """What one pass did, by job id."""

    requeued: list[str] = field(default_factory=list)  # worker lost: queued and sent again
    failed: list[str] = field(default_factory=list)  # worker lost max_attempts times
    cancelled: list[str] = field(default_factory=list)  # worker lost with a cancel request pending
    resent: list[str] = field(default_factory=list)  # queued too long with an idle worker: sent again
    finals: list[str] = field(default_factory=list)  # final jobs created by the join of a failed trial

    def __bool__(self) -> bool:
        return any((self.requeued, self.failed, self.cancelled, self.resent, self.finals))


def task_kind(kind: str, tuning_id: str | None) -> str:
    """The task that runs a job: trials, a tuning run's final job, or a plain training job."""
    if kind == "trial":
        return "trial"
    return "final" if tuning_id is not None else "train"


def recover(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    send: Send,
    *,
    stale_after: float,
    requeue_after: float,
    max_attempts: int,
    idle: bool,
    now: datetime | None = None,
    limit: int = 100,
) -> Recovered:
    """One pass of the reaper, and of the reconciler when this worker is `idle` (has a free slot)."""
    now = now or utcnow()
    done = Recovered()
    _reap(sessions, store, send, now - timedelta(seconds=stale_after), now, max_attempts, limit, done)
    if idle:
        _reconcile(sessions, send, now - timedelta(seconds=requeue_after), now, limit, done)
    return done


def _reap(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    send: Send,
    cutoff: datetime,
    now: datetime,
    max_attempts: int,
    limit: int,
    done: Recovered,
) -> None:
    with sessions() as session:
        dead = session.execute(
            select(Job.id, Job.attempts, Job.kind, Job.tuning_id, Job.cancel_requested, Job.worker, Job.heartbeat_at)
            .where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
            .order_by(Job.heartbeat_at)
            .limit(limit)
        ).all()
    for row in dead:
        # Still the same dead attempt: a claim in between raised attempts and refreshed the heartbeat.
        same = (
            (Job.id == row.id)
            & (Job.status == JobStatus.RUNNING)
            & (Job.attempts == row.attempts)
            & (Job.heartbeat_at < cutoff)
        )
        kind = task_kind(row.kind, row.tuning_id)
        if row.cancel_requested:
            if _update(sessions, same, status=JobStatus.CANCELLED, finished_at=now):
                log.warning("job %s: worker %s lost while cancelling; cancelled", row.id, row.worker)
                done.cancelled.append(row.id)
                _ended(sessions, store, send, row.id, kind, done)
        elif row.attempts >= max_attempts:
            since = row.heartbeat_at.isoformat() if row.heartbeat_at else "never"
            message = (
                f"worker lost {row.attempts} times (the last one, {row.worker}, sent no heartbeat since {since}); "
                f"gave up after max_attempts={max_attempts}"
            )
            error = {"type": "WorkerLost", "message": message}
            if _update(sessions, same, status=JobStatus.FAILED, finished_at=now, error=error):
                log.error("job %s failed: %s", row.id, message)
                done.failed.append(row.id)
                _ended(sessions, store, send, row.id, kind, done)
        elif _update(sessions, same, status=JobStatus.QUEUED, heartbeat_at=now):
            log.warning(
                "job %s: worker %s lost (no heartbeat since %s); sent again for attempt %d of %d",
                row.id,
                row.worker,
                row.heartbeat_at,
                row.attempts + 1,
                max_attempts,
            )
            done.requeued.append(row.id)
            _send(send, row.id, kind)


def _reconcile(
    sessions: sessionmaker[Session], send: Send, cutoff: datetime, now: datetime, limit: int, done: Recovered
) -> None:
    last_sent = func.coalesce(Job.heartbeat_at, Job.created_at)
    with sessions() as session:
        waiting = session.execute(
            select(Job.id, Job.kind, Job.tuning_id)
            .where(Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False), last_sent < cutoff)
            .order_by(Job.created_at)
            .limit(limit)
        ).all()
    for row in waiting:
        still_waiting = (Job.id == row.id) & (Job.status == JobStatus.QUEUED) & (last_sent < cutoff)
        if _update(sessions, still_waiting, heartbeat_at=now):
            log.warning("job %s: queued with no taker while a worker was idle; sent again (lost message?)", row.id)
            done.resent.append(row.id)
            _send(send, row.id, task_kind(row.kind, row.tuning_id))


def _update(sessions: sessionmaker[Session], condition: ColumnElement[bool], **values: Any) -> bool:
    with sessions() as session:
        result = session.execute(update(Job).where(condition).values(**values))
        session.commit()
    return bool(cast(CursorResult[Any], result).rowcount)


def _send(send: Send, job_id: str, kind: str) -> None:
    # A failed send leaves the job queued: the reconciler sends it again later.
    try:
        send(job_id, kind)
    except Exception:
        log.exception("job %s: could not send it to the broker; the reconciler will try again", job_id)


def _ended(
    sessions: sessionmaker[Session], store: ArtifactStore, send: Send, job_id: str, kind: str, done: Recovered
) -> None:
    """After the reaper ended a job: drop what it left, and let its tuning run know."""
    checkpoints.delete(store, job_id)
    if kind != "trial":
        try:
            store.delete(model_key(job_state.model_id_for(job_id)))
        except Exception:
            log.warning("job %s: could not delete its unfinished model", job_id, exc_info=True)
    if kind == "trial":
        final_id = tuning.record_trial(sessions, job_id, None)  # the join: this may have been the last trial
        if final_id is not None:
            done.finals.append(final_id)
            _send(send, final_id, "final")
    elif kind == "final":
        tuning.sync_final(sessions, job_id)
