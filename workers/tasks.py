"""Celery tasks: thin wrappers that take ids and call the services."""

from __future__ import annotations

import os
import socket

from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.recsys.device import set_threads
from app.services.training import run_job
from app.storage import open_store
from workers.celery_app import TRAIN_TASK, celery_app


def train_job(settings: Settings, job_id: str) -> str:
    """Run one job with the given settings (the task body; also called directly in tests)."""
    set_threads(settings.torch_threads)
    return run_job(
        get_sessionmaker(settings.resolved_database_url),
        open_store(settings.resolved_artifact_root, settings),
        job_id,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@celery_app.task(name=TRAIN_TASK)  # type: ignore[untyped-decorator]  # celery ships no types
def train(job_id: str) -> str:
    """Train the model of one job (idempotent: a finished or running job is left alone)."""
    return train_job(get_settings(), job_id)
