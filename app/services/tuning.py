"""Tuning runs: submit a search, read its leaderboard, cancel it, and join its trials (torch-free).

A run's trials are jobs of kind "trial" sent to the queue all at once, so every free worker takes
some. The join — "the last trial to finish submits the retrain of the best one" — lives in the
database, not in a Celery chord: a chord needs a result backend, which this project does not run
(and the embedded folder broker has none), and the rows are the source of truth anyway. Each trial
records its end under a lock on the run's row and counts the trials still active; exactly one
transaction sees zero and creates the final job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InvalidInput, LimitExceeded, NotFound
from app.job_status import ACTIVE, FINISHED, JobStatus
from app.limits import Limits, check_spec
from app.models import Job, TuningRun, TuningTrial, new_id, utcnow
from app.services import quotas
from app.services.datasets import get_dataset
from app.services.pagination import Page, paginate
from app.spec import TrainingSpec
from app.tuning_spec import MAX_TRIALS, SearchSpaceError, SearchSpec, Trial, plan_trials


class Dispatch(Protocol):
    """Sends tuning tasks: all trials of a run at once, then the final retrain."""

    def trials(self, job_ids: Sequence[str]) -> None: ...

    def final(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class TrialView:
    number: int
    job_id: str
    params: dict[str, Any]
    status: str
    value: float | None
    metrics: dict[str, Any] | None
    worker: str | None
    seconds: float | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class TuningView:
    """A run as the API shows it: the row plus its trials, best first."""

    run: TuningRun
    leaderboard: list[TrialView]

    def __getattr__(self, name: str) -> Any:  # id, status, spec, ... come from the row
        return getattr(self.run, name)

    @property
    def progress(self) -> dict[str, Any]:
        done = sum(t.status in FINISHED for t in self.leaderboard)
        phase = "final" if self.run.final_job_id else "trials"
        return {
            "trials_done": done,
            "trials_total": self.run.trials_total,
            "trials_failed": sum(t.status == JobStatus.FAILED for t in self.leaderboard),
            "fraction": done / self.run.trials_total if self.run.trials_total else 1.0,
            "phase": phase,
        }

    @property
    def best(self) -> TrialView | None:
        first = self.leaderboard[0] if self.leaderboard else None
        return first if first is not None and first.value is not None else None


def submit_tuning(
    session: Session,
    spec: TrainingSpec,
    search: SearchSpec,
    dispatch: Dispatch,
    max_trials: int = MAX_TRIALS,
    *,
    limits: Limits = Limits(),  # noqa: B008  # frozen: the built-in limits
    tenant: str,
    max_concurrent_jobs: int,
) -> TuningView:
    """Record the run of `tenant` and one queued job per trial, commit, then send every trial at once.

    404 when the dataset is not the tenant's; 429 when the tenant already has `max_concurrent_jobs`
    training jobs queued or running (the run counts as one, see app.services.quotas).
    """
    try:
        get_dataset(session, spec.dataset_id, tenant=tenant)
    except NotFound:
        raise NotFound(f"spec.dataset_id: no dataset {spec.dataset_id!r}", field="spec.dataset_id") from None
    try:
        plan = plan_trials(spec, search, max_trials)
    except SearchSpaceError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None
    _check_limits(plan.trials, limits)
    run = TuningRun(
        id=new_id("tun"),
        tenant=tenant,
        dataset_id=spec.dataset_id,
        status=JobStatus.QUEUED,
        spec=spec.model_dump(mode="json"),
        search=search.model_dump(mode="json"),
        metric=plan.metric,
        trials_total=len(plan.trials),
    )
    session.add(run)
    job_ids = []
    for trial in plan.trials:
        job = Job(
            id=new_id("job"),
            tenant=tenant,
            dataset_id=spec.dataset_id,
            algorithm=trial.spec.algorithm,
            status=JobStatus.QUEUED,
            spec=trial.spec.model_dump(mode="json"),
            history=[],
            kind="trial",
            tuning_id=run.id,
        )
        session.add(job)
        session.add(TuningTrial(job_id=job.id, tuning_id=run.id, number=trial.number, params=trial.params))
        job_ids.append(job.id)
    quotas.admit(session, tenant, max_concurrent_jobs)
    session.commit()
    # Sent after the commit (workers always find the rows); if the broker is down they stay queued.
    dispatch.trials(job_ids)
    return get_tuning(session, run.id, tenant=tenant)


def _check_limits(trials: Sequence[Trial], limits: Limits) -> None:
    """Every trial's spec within the limits; the error names the search parameter (or spec field) at fault."""
    for trial in trials:
        try:
            check_spec(trial.spec, limits)
        except LimitExceeded as exc:
            path = str(exc.extra["field"])
            where = f"search.params.{path}" if path in trial.params else f"spec.{path}"
            raise LimitExceeded(
                where, exc.extra["value"], exc.extra["limit"], str(exc.extra["setting"]), status=exc.status
            ) from None


def get_tuning(session: Session, tuning_id: str, *, tenant: str) -> TuningView:
    """A run of `tenant`; another tenant's is not found, exactly like a missing one."""
    session.expire_all()  # trials may have run inline since the caller last looked
    run = session.get(TuningRun, tuning_id)
    if run is None or run.tenant != tenant:
        raise NotFound(f"no tuning run {tuning_id!r}")
    return _views(session, [run])[0]


def list_tuning(
    session: Session, status: str | None, limit: int, cursor: str | None, *, tenant: str
) -> Page[TuningView]:
    query = select(TuningRun).where(TuningRun.tenant == tenant)
    if status is not None:
        query = query.where(TuningRun.status == status)
    page = paginate(session, query, TuningRun.id, limit, cursor)
    return Page(_views(session, page.items), page.next_cursor)


def cancel_tuning(session: Session, tuning_id: str, *, tenant: str) -> TuningView:
    """Cancel the run: queued trials at once, running ones at their next step, and the final job."""
    run = get_tuning(session, tuning_id, tenant=tenant).run
    if run.status in FINISHED:
        return get_tuning(session, tuning_id, tenant=tenant)
    now = utcnow()
    session.execute(
        update(TuningRun)
        .where(TuningRun.id == tuning_id, TuningRun.status.in_(ACTIVE))
        .values(status=JobStatus.CANCELLED, finished_at=now)
    )
    # The same conditional updates as a job's cancel: a cancel racing a claim loses neither write.
    session.execute(
        update(Job)
        .where(Job.tuning_id == tuning_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now)
    )
    session.execute(
        update(Job).where(Job.tuning_id == tuning_id, Job.status == JobStatus.RUNNING).values(cancel_requested=True)
    )
    session.commit()
    return get_tuning(session, tuning_id, tenant=tenant)


def mark_started(sessions: sessionmaker[Session], tuning_id: str) -> None:
    """The run is running once a worker claimed its first trial."""
    now = utcnow()
    with sessions() as session:
        session.execute(
            update(TuningRun)
            .where(TuningRun.id == tuning_id, TuningRun.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now)
        )
        session.commit()


def record_trial(
    sessions: sessionmaker[Session],
    job_id: str,
    status: str | None,
    metrics: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> str | None:
    """End a trial (status None: it was not run here) and join: returns a final job id to dispatch.

    The last trial to end creates the final job (the best trial's spec as a normal training job);
    a trial ending after that returns the final job's id again while it is queued, so a worker that
    died between the commit and the send does not strand it (a duplicate task is skipped by the claim).
    """
    now = utcnow()
    with sessions() as session:
        trial = session.get(TuningTrial, job_id)
        if trial is None:
            return None
        # Lock order, everywhere: the run's row, then its jobs' rows (cancel_tuning does the same),
        # so joins and cancels queue up behind each other instead of deadlocking.
        session.get(TuningRun, trial.tuning_id, with_for_update=True)
        if status is None:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(True))
                .values(status=JobStatus.CANCELLED, finished_at=now)
            )
        else:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(status=status, finished_at=now, error=error)
            )
        ended = status is not None and bool(cast(CursorResult[Any], result).rowcount)
        # Read again after that write: on SQLite the write took the database lock (FOR UPDATE is
        # a no-op there), so from here on this transaction sees every other trial's commit.
        run = session.get(TuningRun, trial.tuning_id, populate_existing=True)
        assert run is not None
        if ended and metrics is not None:
            value = metrics.get(run.metric)
            trial.metrics, trial.value = metrics, None if value is None else float(value)
        final_id = _join(session, run)
        session.commit()
        return final_id


def _join(session: Session, run: TuningRun) -> str | None:
    if run.final_job_id is not None:
        final = session.get(Job, run.final_job_id)
        return run.final_job_id if final is not None and final.status == JobStatus.QUEUED else None
    if run.status not in ACTIVE:
        return None
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tuning_id == run.id, Job.kind == "trial", Job.status.in_(ACTIVE))
    )
    if active:
        return None
    best = session.execute(
        select(Job)
        .join(TuningTrial, TuningTrial.job_id == Job.id)
        .where(TuningTrial.tuning_id == run.id, Job.status == JobStatus.SUCCEEDED, TuningTrial.value.is_not(None))
        .order_by(TuningTrial.value.desc(), TuningTrial.number)
        .limit(1)
    ).scalar_one_or_none()
    if best is None:
        run.status, run.finished_at = JobStatus.FAILED, utcnow()
        run.error = {"type": "NoTrialSucceeded", "message": _no_success_message(session, run.id)}
        return None
    final = Job(
        id=new_id("job"),
        tenant=run.tenant,  # the run's own work: admitted with the run, not counted again
        dataset_id=run.dataset_id,
        algorithm=best.algorithm,
        status=JobStatus.QUEUED,
        spec=best.spec,
        history=[],
        kind="train",
        tuning_id=run.id,
    )
    session.add(final)
    run.best_job_id, run.final_job_id = best.id, final.id
    return final.id


def _no_success_message(session: Session, tuning_id: str) -> str:
    failed = session.scalars(
        select(Job).where(Job.tuning_id == tuning_id, Job.kind == "trial", Job.status == JobStatus.FAILED).limit(1)
    ).first()
    if failed is not None and failed.error:
        return f"no trial succeeded; e.g. {failed.error.get('type')}: {failed.error.get('message')}"
    return "no trial succeeded"


def sync_final(sessions: sessionmaker[Session], job_id: str) -> None:
    """Give the run the outcome of its final job (its model when it succeeded)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.tuning_id is None or job.status not in FINISHED:
            return
        session.execute(
            update(TuningRun)
            .where(TuningRun.id == job.tuning_id, TuningRun.final_job_id == job.id, TuningRun.status.in_(ACTIVE))
            .values(status=job.status, model_id=job.model_id, error=job.error, finished_at=job.finished_at or utcnow())
        )
        session.commit()


def _views(session: Session, runs: Sequence[TuningRun]) -> list[TuningView]:
    if not runs:
        return []
    rows = session.execute(
        select(TuningTrial, Job)
        .join(Job, Job.id == TuningTrial.job_id)
        .where(TuningTrial.tuning_id.in_([r.id for r in runs]))
    ).all()
    by_run: dict[str, list[TrialView]] = {r.id: [] for r in runs}
    for trial, job in rows:
        by_run[trial.tuning_id].append(
            TrialView(
                number=trial.number,
                job_id=job.id,
                params=trial.params,
                status=job.status,
                value=trial.value,
                metrics=trial.metrics,
                worker=job.worker,
                seconds=_seconds(job.started_at, job.finished_at),
                error=job.error,
            )
        )
    # Best first; trials without a score (running, failed) after them in trial order.
    key = lambda t: (t.value is None, -(t.value or 0.0), t.number)  # noqa: E731
    return [TuningView(run, sorted(by_run[run.id], key=key)) for run in runs]


def _seconds(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    # SQLite hands datetimes back without a zone; they are stored in UTC.
    started, finished = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (started, finished))
    return round((finished - started).total_seconds(), 3)
