"""The rank task of distributed jobs (app/services/distributed.py): ranks 1… of a job's attempt, on their own
queue so that a rank never waits behind another queued rank of the same job on a busy worker."""

from __future__ import annotations

import socket

from app import logs
from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.recsys.device import set_threads
from app.services import distributed
from app.storage import open_store
from workers.celery_app import RANK_TASK, TRAIN_TASK, celery_app


def rendezvous_host(settings: Settings) -> str:
    """The address other ranks reach this worker at: the setting, else what its hostname resolves to."""
    if settings.rendezvous_host:
        return settings.rendezvous_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def ranks_for(settings: Settings) -> distributed.Ranks:
    """How a job's rank 0 on this worker sends its other ranks and meets them."""

    def send(job_id: str, attempt: int, rank: int) -> None:
        celery_app.send_task(RANK_TASK, args=[job_id, attempt, rank], queue=settings.rank_queue)

    return distributed.Ranks(
        send=send,
        host=rendezvous_host(settings),
        join_seconds=settings.rendezvous_timeout_seconds,
        collective_seconds=settings.rank_timeout_seconds,
    )


def send_again(settings: Settings, job_id: str) -> None:
    """Send a job that went back to the queue (a distributed attempt lost a rank) to the training queue."""
    celery_app.send_task(TRAIN_TASK, args=[job_id], queue=settings.queue)


def rank_job(settings: Settings, job_id: str, attempt: int, rank: int) -> str:
    """Serve one rank of a job's attempt (the task body; also called directly in tests)."""
    set_threads(settings.torch_threads)
    with logs.job_context(job_id):
        return distributed.serve_rank(
            get_sessionmaker(settings.resolved_database_url),
            open_store(settings.resolved_artifact_root, settings),
            job_id,
            attempt,
            rank,
            settings.rendezvous_timeout_seconds,
            settings.rank_timeout_seconds,
        )


@celery_app.task(name=RANK_TASK)  # type: ignore[untyped-decorator]  # celery ships no types
def rank(job_id: str, attempt: int, rank: int) -> str:
    """Be rank `rank` of a distributed job's attempt until its rank 0 is done (a stale attempt's leave at once)."""
    return rank_job(get_settings(), job_id, attempt, rank)
