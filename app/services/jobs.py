"""Training-job use cases on the API side: submit, read, list, cancel."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.job_status import FINISHED, JobStatus
from app.limits import Limits, check_spec
from app.models import Job, new_id, utcnow
from app.services import dataset_versions, quotas, warm_start
from app.services.datasets import get_dataset
from app.services.pagination import Page, paginate
from app.spec import TrainingSpec

Enqueue = Callable[[str], None]


def submit_job(
    session: Session,
    spec: TrainingSpec,
    enqueue: Enqueue,
    limits: Limits,
    *,
    tenant: str,
    max_concurrent_jobs: int,
    before_commit: Callable[[Job], None] | None = None,
) -> Job:
    """Record a queued job of `tenant`, commit, and only then hand its id to the queue.

    404 when the dataset is not one of the tenant's (exactly as when it does not exist), 429 when
    the tenant already has `max_concurrent_jobs` training jobs queued or running. `before_commit` may write
    rows that must be committed with the job (an alias's retrain records its job).
    """
    try:
        dataset = get_dataset(session, spec.dataset_id, tenant=tenant)
    except NotFound:
        raise NotFound(f"dataset_id: no dataset {spec.dataset_id!r}", field="dataset_id") from None
    # The job records what it trains on: the version (the latest when none is named) and the warm-start model.
    spec = warm_start.complete_spec(session, spec, tenant=tenant)
    version = dataset_versions.get_version(session, dataset, spec.dataset_version)
    spec = spec.model_copy(update={"dataset_version": version.version})
    check_spec(spec, limits)
    job = Job(
        id=new_id("job"),
        tenant=tenant,
        dataset_id=spec.dataset_id,
        algorithm=spec.algorithm,
        status=JobStatus.QUEUED,
        spec=spec.model_dump(mode="json"),
        history=[],
    )
    session.add(job)
    quotas.admit(session, tenant, max_concurrent_jobs)
    if before_commit is not None:
        before_commit(job)
    session.commit()
    # Sent after the commit so the worker always finds the row; if the broker is down the job
    # stays queued in the database, which is the source of truth.
    enqueue(job.id)
    return job


def get_job(session: Session, job_id: str, *, tenant: str) -> Job:
    """A job of `tenant`; another tenant's is not found, exactly like a missing one."""
    job = session.get(Job, job_id)
    if job is None or job.tenant != tenant:
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(session: Session, status: str | None, limit: int, cursor: str | None, *, tenant: str) -> Page[Job]:
    query = select(Job).where(Job.tenant == tenant)
    if status is not None:
        query = query.where(Job.status == status)
    return paginate(session, query, Job.id, limit, cursor)


def cancel_job(session: Session, job_id: str, *, tenant: str) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next iteration.

    409 when the job has already ended: a cancel that changes nothing must not read as one that worked.
    """
    job = get_job(session, job_id, tenant=tenant)
    if job.status in FINISHED:
        raise _already_finished(job)
    # Conditional updates, so a cancel racing the worker's claim never loses either write.
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=utcnow())
    )
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):  # it ended between the read and the updates
        raise _already_finished(job)
    return job


def _already_finished(job: Job) -> Conflict:
    state = "was already cancelled" if job.status == JobStatus.CANCELLED else f"has already {job.status}"
    return Conflict(
        f"job {job.id!r} {state}, so nothing was cancelled; only a queued or running job can be",
        job_id=job.id,
        job_status=job.status,
    )
