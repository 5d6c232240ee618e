"""Training-job use cases on the API side: submit, read, list, cancel."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.limits import Limits, check_spec
from app.models import Dataset, Job, new_id, utcnow
from app.services.pagination import Page, paginate
from app.spec import TrainingSpec

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")

Enqueue = Callable[[str], None]


def submit_job(session: Session, spec: TrainingSpec, enqueue: Enqueue, limits: Limits) -> Job:
    """Record a queued job, commit, and only then hand its id to the queue."""
    check_spec(spec, limits)
    if session.get(Dataset, spec.dataset_id) is None:
        raise InvalidInput(f"dataset_id: no dataset {spec.dataset_id!r}", field="dataset_id")
    job = Job(
        id=new_id("job"),
        dataset_id=spec.dataset_id,
        algorithm=spec.algorithm,
        status="queued",
        spec=spec.model_dump(mode="json"),
        history=[],
    )
    session.add(job)
    session.commit()
    # Sent after the commit so the worker always finds the row; if the broker is down the job
    # stays queued in the database, which is the source of truth.
    enqueue(job.id)
    return job


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(session: Session, status: str | None, limit: int, cursor: str | None) -> Page[Job]:
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    return paginate(session, query, Job.id, limit, cursor)


def cancel_job(session: Session, job_id: str) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next iteration."""
    job = get_job(session, job_id)
    if job.status in FINISHED:
        return job
    # Conditional updates, so a cancel racing the worker's claim never loses either write.
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=utcnow())
    )
    session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(cancel_requested=True))
    session.commit()
    session.refresh(job)
    return job
