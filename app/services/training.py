"""Run one training job: claim it, train its model, publish it, record how the job ended.

Called by the Celery task with a job id; everything it learns about the job comes from the
database row, and everything it produces goes back there or to the artifact store. The model
itself is made by the pipeline (pipeline.py: fit, evaluate, refit) and published whole
(publishing.py).

Crash safety: a job checkpoints its training (checkpoints.py) and an attempt that finds a checkpoint
goes on from it. The one model a job can make has an id derived from the job's, and is published
whole before its row is committed with the job's success: an attempt that finds the model already
published (its worker died before the commit) records that model instead of training again, so a
job never loses a finished model nor makes two.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from app.job_status import FINISHED, JobStatus
from app.models import Dataset, Job, Model
from app.services import checkpoints, distributed, job_state
from app.services.algorithms import plan_for
from app.services.dataset_versions import get_version, load_version
from app.services.fitting import open_checkpoints
from app.services.models import model_key
from app.services.pipeline import train_evaluate_refit
from app.services.progress import JobProgress, planned_phases
from app.services.publishing import model_row, publish_model, published_meta, restore_finished
from app.services.warm_fitting import warm_start
from app.spec import TrainingSpec
from app.storage import ArtifactStore

log = logging.getLogger(__name__)


def train_model(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    job: Job,
    reporter: job_state.JobReporter,
    checkpoint_seconds: float | None = None,
    search_budget: float = 3.0,
    ranks: distributed.Ranks | None = None,
) -> Model:
    """Choose the settings the spec leaves out (or take its values), fit, evaluate and (when a split was held
    out) refit on all data; store the artifact.

    With `checkpoint_seconds` (None: no checkpoints) the training state is saved at most that often
    and a checkpoint left by an earlier attempt is resumed; a model an earlier attempt already
    published is returned as it is. `search_budget` is the search's budget when the spec names none.
    A spec with distributed.workers > 1 trains on that many ranks, this process being rank 0 (`ranks` sends
    the others; distributed.py).
    """
    model_id = job_state.model_id_for(job.id)
    published = published_meta(store, model_id, job.id)
    if published is not None:
        restore_finished(reporter, published)
        log.info("job %s: model %s was published by an earlier attempt; recording it", job.id, model_id)
        return model_row(job, published)
    spec = TrainingSpec.model_validate(job.spec)
    with sessions() as session:
        dataset = session.get(Dataset, job.dataset_id)
        if dataset is None:
            raise LookupError(f"dataset {job.dataset_id!r} no longer exists")
        version = get_version(session, dataset, spec.dataset_version)
        source = session.get(Model, spec.warm_start) if spec.warm_start is not None else None
    if spec.warm_start is not None and source is None:
        raise LookupError(f"warm_start: model {spec.warm_start!r} no longer exists")
    checkpointer = open_checkpoints(store, job, dataset, reporter, checkpoint_seconds)
    stored = load_version(store, version)
    warm = warm_start(store, source, stored, spec) if source is not None else None
    plan = plan_for(spec)
    progress = JobProgress(reporter, planned_phases(spec, spec.search.mode == "auto", plan.weight), plan.unit)
    workers = spec.distributed.workers
    if workers > 1:
        if ranks is None:
            raise distributed.RanksMissing(f"distributed.workers {workers}: this worker cannot send rank tasks")
        with distributed.coordinating(sessions, store, reporter.lease, workers, ranks) as coordinator:
            trained = train_evaluate_refit(stored, spec, progress, checkpointer, search_budget, coordinator.fit)
    else:
        trained = train_evaluate_refit(
            stored, spec, progress, checkpointer, search_budget, warm.fit if warm is not None else None
        )
        if warm is not None:
            trained.metrics["warm_start"] = warm.report
    if reporter.cancel_requested():
        raise job_state.JobCancelled("cancelled by request")
    progress.report("publish", 0.0, 0, 0)
    meta = publish_model(store, model_id, job, trained, stored, reporter)
    progress.finished()
    return model_row(job, meta)


def run_job(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    job_id: str,
    *,
    worker: str,
    heartbeat_seconds: float,
    checkpoint_seconds: float | None = None,
    search_budget: float = 3.0,
    ranks: distributed.Ranks | None = None,
    max_attempts: int = 3,
) -> str:
    """Claim and run a job to a final status; returns what happened (for logs and tests).

    "lost" means another worker took the job over while this one ran (it was taken for dead):
    this attempt then leaves the row, its checkpoint and any published model to that worker.
    "requeued": a rank of a distributed job left mid-fit; the job is queued again (below `max_attempts`)
    with its checkpoint, for the caller to send again.
    """
    lease = job_state.claim(sessions, job_id, worker, stale_after=job_state.stale_after(heartbeat_seconds))
    if lease is None:
        _after_skip(sessions, store, job_id)
        log.info("job %s not claimed (finished, cancelled or running elsewhere)", job_id)
        return "skipped"
    with sessions() as session:
        job = session.get(Job, job_id)
    assert job is not None
    key = model_key(job_state.model_id_for(job_id))
    try:
        with job_state.JobReporter(sessions, lease, heartbeat_seconds) as reporter:
            model = train_model(sessions, store, job, reporter, checkpoint_seconds, search_budget, ranks)
            # The published model now survives a crash on its own: the checkpoint is no longer needed.
            if job_state.holds(sessions, lease):
                checkpoints.delete(store, job_id)
        if job_state.succeed(sessions, lease, model):
            log.info("job %s succeeded: model %s", job_id, model.id)
            return "succeeded"
        if not job_state.holds(sessions, lease):
            raise job_state.LeaseLost(f"job {job_id}: lost before its success was recorded")
        _discard(sessions, store, lease, key)
        job_state.finish(sessions, job_id, JobStatus.CANCELLED, lease)
        return "cancelled"
    except job_state.LeaseLost:
        log.warning("job %s: attempt %d was taken over by another worker; leaving it", job_id, lease.attempt)
        return "lost"
    except job_state.JobCancelled:
        _discard(sessions, store, lease, key)
        job_state.finish(sessions, job_id, JobStatus.CANCELLED, lease)
        log.info("job %s cancelled", job_id)
        return "cancelled"
    except distributed.RanksLost as exc:
        if lease.attempt < max_attempts and distributed.requeue(sessions, lease):
            log.warning("job %s: attempt %d lost a rank (%s); queued again", job_id, lease.attempt, exc)
            return "requeued"
        log.error("job %s failed: %s (attempt %d of %d)", job_id, exc, lease.attempt, max_attempts)
        _discard(sessions, store, lease, key)
        job_state.finish(sessions, job_id, JobStatus.FAILED, lease, error={"type": "RanksLost", "message": str(exc)})
        return "failed"
    except Exception as exc:  # the job records every failure; nothing is left "running"
        log.exception("job %s failed", job_id)
        _discard(sessions, store, lease, key)
        error = {"type": type(exc).__name__, "message": str(exc)}
        job_state.finish(sessions, job_id, JobStatus.FAILED, lease, error=error)
        return "failed"


def _discard(sessions: sessionmaker[Session], store: ArtifactStore, lease: job_state.Lease, key: str) -> None:
    """A job ending without a model leaves nothing behind: no checkpoint, no published model.

    Deleted before the final status is written: a crash in between leaves a running job that is
    sent again and ends the same way, never a finished job with leftovers nobody will delete.
    """
    if not job_state.holds(sessions, lease):
        return  # another worker's job now: its checkpoint is its own
    checkpoints.delete(store, lease.job_id)
    try:
        store.delete(key)
    except Exception:  # the outcome is recorded all the same; an orphan artifact is only space
        log.warning("job %s: could not delete its unfinished model %s", lease.job_id, key, exc_info=True)


def _after_skip(sessions: sessionmaker[Session], store: ArtifactStore, job_id: str) -> None:
    """A delivery that did not claim its job: end a cancelled queued job, and clean up after a finished one
    (a late delivery is how a job cancelled or failed while it waited for a worker loses its checkpoint)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        if job.status == JobStatus.QUEUED and job.cancel_requested:
            job_state.finish(sessions, job_id, JobStatus.CANCELLED)
            session.refresh(job)
        if job.status in FINISHED:
            checkpoints.delete(store, job_id)
            if job.status != JobStatus.SUCCEEDED:
                try:
                    store.delete(model_key(job_state.model_id_for(job_id)))
                except Exception:
                    log.warning("job %s: could not delete its unfinished model", job_id, exc_info=True)
