"""How tuning tasks leave the process: a Celery group over the broker, or inline in eager mode.

Cheap to import (no torch): the API builds one to send a run's trials.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from celery import Celery, group

from app.config import Settings
from app.services.tuning import Dispatch
from workers.celery_app import FINAL_TASK, TRIAL_TASK

log = logging.getLogger(__name__)


class CeleryDispatch:
    """Every trial of a run in one group, so all free workers take some at once. No chord: the
    join needs no result backend because the last trial to finish does it in the database."""

    def __init__(self, celery: Celery, queue: str) -> None:
        self.celery, self.queue = celery, queue

    def trials(self, job_ids: Sequence[str]) -> None:
        try:
            group(
                self.celery.signature(TRIAL_TASK, args=[job_id], queue=self.queue) for job_id in job_ids
            ).apply_async()
        except Exception:  # the trial rows stay queued; they are the source of truth
            log.exception("could not send %d trials to the broker", len(job_ids))

    def final(self, job_id: str) -> None:
        try:
            self.celery.send_task(FINAL_TASK, args=[job_id], queue=self.queue)
        except Exception:
            log.exception("could not send final job %s to the broker", job_id)


class InlineDispatch:
    """Eager mode (tests, no worker): each trial, then the final job, runs in the calling process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = f"inline@{socket.gethostname()}:{os.getpid()}"

    def trials(self, job_ids: Sequence[str]) -> None:
        from workers.tasks import trial_job

        for job_id in job_ids:
            trial_job(self.settings, job_id, worker=self.worker, dispatch=self)

    def final(self, job_id: str) -> None:
        from workers.tasks import final_job

        final_job(self.settings, job_id)


def tuning_dispatch(settings: Settings, celery: Celery) -> Dispatch:
    """The dispatch the API uses for tuning runs."""
    return InlineDispatch(settings) if settings.task_always_eager else CeleryDispatch(celery, settings.queue)
