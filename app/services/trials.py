"""Run one tuning trial on a worker: claim its job, fit on a validation split, record the score.

The validation split is carved out of the training part of the spec's own split, with the same
method and fraction: the trials never see the test part, so the final job — the best spec trained
on that training part — reports test metrics that the search did not choose for.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.job_status import FINISHED, JobStatus
from app.models import Dataset, Job
from app.recsys.interactions import Interactions
from app.recsys.split import split
from app.services import checkpoints, job_state, tuning
from app.services.datasets import load_dataset
from app.services.fitting import fit_and_score, open_checkpoints
from app.spec import TrainingSpec
from app.storage import ArtifactStore

log = logging.getLogger(__name__)


def validation_split(data: Interactions, spec: TrainingSpec) -> tuple[Interactions, Interactions]:
    """(fit, validation): the spec's split drops its test part, then the same method splits the rest."""
    ev = spec.evaluation
    train, _test = split(data, ev.split, ev.test_fraction, spec.seed)
    fit, valid = split(train, ev.split, ev.test_fraction, spec.seed + 1)
    if valid.nnz == 0:
        raise ValueError(f"evaluation.split {ev.split!r} left no validation interactions in the training part")
    return fit, valid


def run_trial(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    job_id: str,
    *,
    worker: str,
    heartbeat_seconds: float,
    checkpoint_seconds: float | None = None,
) -> tuple[str, str | None]:
    """Claim and run one trial to a final status; returns (what happened, a final job id to dispatch).

    A trial whose worker died is sent again like any job and resumes from its checkpoint; it joins its
    run when it ends, whichever attempt that is. "lost": another worker took it over and will join.
    """
    lease = job_state.claim(sessions, job_id, worker, stale_after=job_state.stale_after(heartbeat_seconds))
    if lease is None:
        # Finished, cancelled or running elsewhere: still join, in case this delivery is the one
        # that would otherwise have found every trial ended (a cancelled queued trial).
        log.info("trial %s not claimed (finished, cancelled or running elsewhere)", job_id)
        final_id = tuning.record_trial(sessions, job_id, None)
        with sessions() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status in FINISHED:
                checkpoints.delete(store, job_id)
        return "skipped", final_id
    with sessions() as session:
        job = session.get(Job, job_id)
        dataset = session.get(Dataset, job.dataset_id) if job is not None else None
    assert job is not None and job.tuning_id is not None
    tuning.mark_started(sessions, job.tuning_id)
    try:
        if dataset is None:
            raise LookupError(f"dataset {job.dataset_id!r} no longer exists")
        spec = TrainingSpec.model_validate(job.spec)
        with job_state.JobReporter(sessions, lease, heartbeat_seconds) as reporter:
            checkpointer = open_checkpoints(store, job, dataset, reporter, checkpoint_seconds)
            fit, valid = validation_split(load_dataset(store, dataset).interactions, spec)
            metrics = fit_and_score(fit, valid, spec, reporter, checkpointer)
        log.info("trial %s succeeded: %s", job_id, metrics)
        return "succeeded", _end(sessions, store, lease, JobStatus.SUCCEEDED, metrics=metrics)
    except job_state.LeaseLost:
        log.warning("trial %s: attempt %d was taken over by another worker; leaving it", job_id, lease.attempt)
        return "lost", None
    except job_state.JobCancelled:
        log.info("trial %s cancelled", job_id)
        return "cancelled", _end(sessions, store, lease, JobStatus.CANCELLED)
    except Exception as exc:  # the trial records every failure; the run goes on with the others
        log.exception("trial %s failed", job_id)
        error = {"type": type(exc).__name__, "message": str(exc)}
        return "failed", _end(sessions, store, lease, JobStatus.FAILED, error=error)


def _end(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    lease: job_state.Lease,
    status: str,
    metrics: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> str | None:
    """Drop the trial's checkpoint, then record its end and join its run (unless another worker has it now)."""
    if not job_state.holds(sessions, lease):
        log.warning("trial %s: attempt %d was taken over before it ended; leaving it", lease.job_id, lease.attempt)
        return None
    checkpoints.delete(store, lease.job_id)
    return tuning.record_trial(sessions, lease.job_id, status, metrics=metrics, error=error)
