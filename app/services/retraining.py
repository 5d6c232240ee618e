"""Scheduled retraining of aliases, and the guardrail that decides whether an alias moves to the new model.

Celery beat sends a check every UNFOLD_RETRAIN_CHECK_SECONDS; a worker runs `check_policies`. For each alias whose
policy is due (N minutes since its last retrain, or M new events) and that has no retrain in flight it:

1. claims the retrain: a `retrains` row (outcome "training") and the policy's clock, in one transaction, under a
   lock on the policy row (PostgreSQL), so two checks never start two retrains of one alias;
2. folds the dataset's pending events into a new version (the retrain trains on everything there is);
3. submits a job (retrain_policies.retrain_spec: the alias model's spec with the policy's changes, warm-started
   from it) and records its id with it; the caller sends the job after the commit.

When the job ends, `settle` (run by the retrain task right after the job, and by every check as a safety net)
compares the new model's held-out metric with the one of the model the alias points at now: the alias moves when
new ≥ current × (1 − tolerance), with a conditional update (an alias moved meanwhile by hand is not overwritten);
otherwise it stays, and the refusal says why. Either way the row records both values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.errors import Conflict, DomainError
from app.job_status import FINISHED, JobStatus
from app.limits import Limits
from app.models import Alias, Dataset, Event, Job, Model, Retrain, RetrainPolicy, new_id, utcnow
from app.services import dataset_versions, jobs
from app.services.retrain_policies import retrain_spec
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

TRAINING, MOVED, REFUSED, FAILED = "training", "moved", "refused", "failed"
OUTCOMES = (MOVED, REFUSED, FAILED)
# A claimed retrain whose job was never recorded (the check died between the two commits) is given up after this.
UNSUBMITTED_AFTER = timedelta(minutes=10)

Send = Callable[[str], None]  # hands a retrain's job id to the queue


@dataclass(frozen=True)
class Due:
    """Why an alias is due for a retrain, and the events its model has not seen (the watermark to move on from)."""

    trigger: str  # "events" or "schedule"
    events_through: int


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def check_policies(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    send: Send,
    limits: Limits,
    *,
    max_concurrent_jobs: int,
    now: datetime | None = None,
) -> list[str]:
    """One beat: settle retrains whose job ended, then start those that are due; the ids of the retrains started
    (their jobs already sent through `send`)."""
    now = now or utcnow()
    settle_finished(sessions, now=now)
    with sessions() as session:
        keys = session.execute(select(RetrainPolicy.tenant, RetrainPolicy.alias)).all()
    started = []
    for tenant, alias in keys:
        try:
            retrain = start_if_due(sessions, store, tenant, alias, limits, max_concurrent_jobs=max_concurrent_jobs,
                                   now=now)  # fmt: skip
        except Exception:  # one alias's trouble (its dataset deleted mid-check...) must not stop the others
            log.exception("retrain check of alias %r (tenant %r) failed", alias, tenant)
            continue
        if retrain is not None:
            started.append(retrain.id)
            if retrain.job_id is not None:
                send(retrain.job_id)
    return started


def due(session: Session, policy: RetrainPolicy, model: Model, dataset: Dataset, now: datetime) -> Due | None:
    """Whether the policy wants a retrain now: M events since the last one, or N minutes with something new."""
    model_version = dataset_versions.get_version(session, dataset, model.spec.get("dataset_version") or 1)
    watermark = policy.events_through if policy.events_through is not None else model_version.events_through
    last = session.scalar(select(func.max(Event.seq)).where(Event.dataset_id == dataset.id)) or 0
    if policy.after_events is not None:
        new = session.scalar(select(func.count(Event.seq)).where(Event.dataset_id == dataset.id, Event.seq > watermark))
        if (new or 0) >= policy.after_events:
            return Due("events", last)
    if policy.every_minutes is not None:
        since = _utc(policy.last_retrain_at or policy.updated_at)
        if now - since >= timedelta(minutes=policy.every_minutes):
            # Nothing the model has not trained on: a retrain would learn nothing new.
            latest = dataset_versions.get_version(session, dataset, None)
            if last > model_version.events_through or latest.version > model_version.version:
                return Due("schedule", last)
    return None


def start_if_due(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tenant: str,
    name: str,
    limits: Limits,
    *,
    max_concurrent_jobs: int,
    now: datetime,
) -> Retrain | None:
    """Claim, fold and submit one alias's retrain when its policy is due; the retrain (None when not due)."""
    with sessions() as session:
        policy = session.scalar(
            select(RetrainPolicy)
            .where(RetrainPolicy.tenant == tenant, RetrainPolicy.alias == name)
            .with_for_update()  # PostgreSQL: checks of one alias queue here; SQLite has a single writer anyway
        )
        if policy is None:
            return None
        in_flight = session.scalar(
            select(Retrain.id).where(Retrain.tenant == tenant, Retrain.alias == name, Retrain.outcome == TRAINING)
        )
        alias = session.get(Alias, (tenant, name))
        model = session.get(Model, alias.model_id) if alias is not None else None
        dataset = session.get(Dataset, model.dataset_id) if model is not None else None
        if in_flight is not None or model is None or dataset is None:
            return None
        reason = due(session, policy, model, dataset, now)
        if reason is None:
            return None
        retrain = Retrain(
            id=new_id("rt"),
            tenant=tenant,
            alias=name,
            trigger=reason.trigger,
            outcome=TRAINING,
            dataset_id=dataset.id,
            current_model_id=model.id,
            metric=policy.metric,
            tolerance=policy.tolerance,
            created_at=now,
        )
        session.add(retrain)
        policy.last_retrain_at = now
        policy.events_through = reason.events_through
        session.commit()
        # The claim is committed: from here on a failure is recorded on the retrain, never retried in a loop.
        try:
            try:
                version = dataset_versions.create_version(session, store, dataset.id, tenant=tenant)
            except Conflict:  # no events since the latest version (or another fold made it): train on the latest
                session.rollback()
                version = dataset_versions.get_version(session, dataset, None)
            spec = retrain_spec(model, policy).model_copy(update={"dataset_version": version.version})

            def record(job: Job) -> None:
                retrain.job_id, retrain.dataset_version = job.id, version.version
                # Events posted between the claim and the fold are in this retrain too: do not count them again.
                policy.events_through = max(policy.events_through or 0, version.events_through)

            session.add(retrain)
            jobs.submit_job(session, spec, lambda _: None, limits, tenant=tenant,
                            max_concurrent_jobs=max_concurrent_jobs, before_commit=record)  # fmt: skip
        except (DomainError, ValueError) as exc:
            session.rollback()
            detail = exc.detail if isinstance(exc, DomainError) else str(exc)
            _decide(session, retrain.id, FAILED, f"the retrain's job could not be submitted: {detail}", now=now)
        session.refresh(retrain)
        log.info("alias %r (tenant %r): retrain %s started (%s), job %s", name, tenant, retrain.id, reason.trigger,
                 retrain.job_id)  # fmt: skip
        return retrain


def settle_finished(sessions: sessionmaker[Session], *, now: datetime | None = None) -> list[str]:
    """Decide every retrain whose job has ended; the ids decided."""
    with sessions() as session:
        pending = list(session.scalars(select(Retrain.id).where(Retrain.outcome == TRAINING)))
    return [rid for rid in pending if settle(sessions, rid, now=now) in OUTCOMES]


def settle_job(sessions: sessionmaker[Session], job_id: str) -> str | None:
    """Decide the retrain of a job that just ended (the retrain task's second half); its outcome, None if none."""
    with sessions() as session:
        rid = session.scalar(select(Retrain.id).where(Retrain.job_id == job_id))
    return settle(sessions, rid) if rid is not None else None


def settle(sessions: sessionmaker[Session], retrain_id: str, *, now: datetime | None = None) -> str | None:
    """Apply the guardrail to one retrain once its job has ended; its outcome (still "training" while the job runs)."""
    now = now or utcnow()
    with sessions() as session:
        retrain = session.get(Retrain, retrain_id)
        if retrain is None or retrain.outcome != TRAINING:
            return retrain.outcome if retrain is not None else None
        if retrain.job_id is None:
            if now - _utc(retrain.created_at) < UNSUBMITTED_AFTER:
                return TRAINING
            return _decide(
                session, retrain.id, FAILED, "its job was never submitted (the check stopped first)", now=now
            )
        job = session.get(Job, retrain.job_id)
        if job is None:
            return _decide(session, retrain.id, FAILED, f"its job {retrain.job_id} was deleted", now=now)
        if job.status not in FINISHED:
            return TRAINING
        if job.status != JobStatus.SUCCEEDED or job.model_id is None:
            why = (job.error or {}).get("message") or job.status
            return _decide(session, retrain.id, FAILED, f"job {job.id} {job.status}: {why}", now=now)
        alias = session.get(Alias, (retrain.tenant, retrain.alias))
        new = session.get(Model, job.model_id)
        current = session.get(Model, alias.model_id) if alias is not None else None
        if alias is None or new is None or current is None:
            return _decide(session, retrain.id, FAILED, "the alias or a model was deleted meanwhile", now=now)
        verdict = guardrail(retrain.metric, retrain.tolerance, current, new)
        values = {"new_model_id": new.id, "current_model_id": current.id, "current_value": verdict.current,
                  "new_value": verdict.new}  # fmt: skip
        if verdict.moves:
            moved = session.execute(
                update(Alias)
                .where(Alias.tenant == alias.tenant, Alias.name == alias.name, Alias.model_id == current.id)
                .values(model_id=new.id, updated_at=now)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult has it
                session.rollback()
                return settle(sessions, retrain_id, now=now)  # moved by hand meanwhile: judge against that model
        return _decide(session, retrain.id, MOVED if verdict.moves else REFUSED, verdict.reason, now=now, **values)


@dataclass(frozen=True)
class Verdict:
    moves: bool
    reason: str
    current: float | None
    new: float | None


def guardrail(metric: str, tolerance: float, current: Model, new: Model) -> Verdict:
    """Whether the alias may move from `current` to `new`: new ≥ current × (1 − tolerance) on held-out `metric`."""
    now_value, new_value = _metric(current, metric), _metric(new, metric)
    if new_value is None:
        return Verdict(False, f"the new model has no held-out {metric}", now_value, None)
    if now_value is None:
        return Verdict(
            False,
            f"the alias's model {current.id} has no held-out {metric} to compare with (trained without a split): "
            "point the alias at a model trained with one",
            None,
            new_value,
        )
    floor = now_value * (1 - tolerance)
    if new_value >= floor:
        return Verdict(True, f"{metric} {new_value:.4f} against {now_value:.4f} (floor {floor:.4f})", now_value,
                       new_value)  # fmt: skip
    drop = 1 - new_value / now_value if now_value else 0.0
    return Verdict(
        False,
        f"{metric} {new_value:.4f} is {drop:.1%} below the current model's {now_value:.4f}, more than the tolerance "
        f"of {tolerance:.1%} (floor {floor:.4f})",
        now_value,
        new_value,
    )


def _metric(model: Model, metric: str) -> float | None:
    value = (model.metrics or {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def _decide(session: Session, retrain_id: str, outcome: str, reason: str, *, now: datetime, **values: object) -> str:
    """Record a retrain's outcome unless another settle already did (then its outcome wins)."""
    decided = session.execute(
        update(Retrain)
        .where(Retrain.id == retrain_id, Retrain.outcome == TRAINING)
        .values(outcome=outcome, reason=reason[:2000], decided_at=now, **values)
    )
    if decided.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return session.scalar(select(Retrain.outcome).where(Retrain.id == retrain_id)) or outcome
    session.commit()
    log.info("retrain %s: %s (%s)", retrain_id, outcome, reason)
    return outcome


def retrain_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Decided retrains by outcome (moved, refused, failed), all aliases together, for /metrics."""
    with sessions() as session:
        rows = session.execute(
            select(Retrain.outcome, func.count()).where(Retrain.outcome.in_(OUTCOMES)).group_by(Retrain.outcome)
        ).all()
    return {outcome: int(n) for outcome, n in rows}
