"""Celery tasks: thin wrappers that take ids and call the services."""

from __future__ import annotations

import logging
import os
import socket

from celery import Task

from app import logs
from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.recsys.device import set_threads
from app.services import retraining, tuning
from app.services.training import run_job
from app.services.trials import run_trial
from app.storage import open_store
from workers import recovery  # noqa: F401  # connects the reaper/reconciler to worker start
from workers.celery_app import FINAL_TASK, RETRAIN_CHECK_TASK, RETRAIN_TASK, TRAIN_TASK, TRIAL_TASK, celery_app
from workers.ranks import ranks_for, send_again

log = logging.getLogger(__name__)


def train_job(settings: Settings, job_id: str) -> str:
    """Run one job with the given settings (the task body; also called directly in tests)."""
    set_threads(settings.torch_threads)
    with logs.job_context(job_id):
        outcome = run_job(
            get_sessionmaker(settings.resolved_database_url),
            open_store(settings.resolved_artifact_root, settings),
            job_id,
            worker=f"{socket.gethostname()}:{os.getpid()}",
            heartbeat_seconds=settings.heartbeat_seconds,
            checkpoint_seconds=settings.checkpoint_seconds,
            search_budget=settings.search_budget,
            ranks=ranks_for(settings),
            max_attempts=settings.max_attempts,
        )
    if outcome == "requeued":  # after the row went back to queued, like every send
        send_again(settings, job_id)
    return outcome


@celery_app.task(name=TRAIN_TASK)  # type: ignore[untyped-decorator]  # celery ships no types
def train(job_id: str) -> str:
    """Train the model of one job (idempotent: a finished or running job is left alone)."""
    return train_job(get_settings(), job_id)


def trial_job(settings: Settings, job_id: str, *, worker: str, dispatch: tuning.Dispatch) -> str:
    """Run one tuning trial; the last one to end sends the final retrain (also called in tests)."""
    set_threads(settings.torch_threads)
    with logs.job_context(job_id):
        outcome, final_id = run_trial(
            get_sessionmaker(settings.resolved_database_url),
            open_store(settings.resolved_artifact_root, settings),
            job_id,
            worker=worker,
            heartbeat_seconds=settings.heartbeat_seconds,
            checkpoint_seconds=settings.checkpoint_seconds,
        )
    if final_id is not None:
        dispatch.final(final_id)  # after the join's commit, like every send
    return outcome


def final_job(settings: Settings, job_id: str) -> str:
    """Train a tuning run's final job like any job, then give the run its outcome and model."""
    outcome = train_job(settings, job_id)
    tuning.sync_final(get_sessionmaker(settings.resolved_database_url), job_id)
    return outcome


@celery_app.task(name=TRIAL_TASK, bind=True)  # type: ignore[untyped-decorator]
def trial(self: Task, job_id: str) -> str:
    """Run one tuning trial (idempotent: a finished or running trial is left alone, but still joined)."""
    from workers.dispatch import CeleryDispatch

    settings = get_settings()
    # The Celery node name (unfold worker --name) tells the workers of one host apart.
    worker = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    return trial_job(settings, job_id, worker=worker, dispatch=CeleryDispatch(celery_app, settings.queue))


@celery_app.task(name=FINAL_TASK)  # type: ignore[untyped-decorator]
def final(job_id: str) -> str:
    """Retrain a tuning run's best trial on the full data as a normal model (idempotent like train)."""
    return final_job(get_settings(), job_id)


def retrain_job(settings: Settings, job_id: str) -> str:
    """Train an alias's retrain like any job, then apply the guardrail: the alias moves or the refusal is recorded."""
    outcome = train_job(settings, job_id)
    retraining.settle_job(get_sessionmaker(settings.resolved_database_url), job_id)
    return outcome


@celery_app.task(name=RETRAIN_TASK)  # type: ignore[untyped-decorator]
def retrain(job_id: str) -> str:
    """Train a retrain's job and decide whether its alias moves (idempotent: a decided retrain stays decided)."""
    return retrain_job(get_settings(), job_id)


def check_retrains(settings: Settings, send: retraining.Send | None = None) -> list[str]:
    """The beat's check: settle ended retrains, start due ones and send their jobs (also called in tests)."""

    def send_retrain(job_id: str) -> None:
        if settings.task_always_eager:
            retrain_job(settings, job_id)
            return
        try:
            celery_app.send_task(RETRAIN_TASK, args=[job_id], queue=settings.queue)
        except Exception:  # the job stays queued in the database: the reconciler sends it, the next check settles it
            log.exception("could not send retrain job %s to the broker", job_id)

    return retraining.check_policies(
        get_sessionmaker(settings.resolved_database_url),
        open_store(settings.resolved_artifact_root, settings),
        send or send_retrain,
        settings.limits,
        max_concurrent_jobs=settings.max_concurrent_jobs,
    )


@celery_app.task(name=RETRAIN_CHECK_TASK)  # type: ignore[untyped-decorator]
def check() -> list[str]:
    """Celery beat's periodic check of the aliases' retrain policies (cheap when none is due)."""
    return check_retrains(get_settings())
