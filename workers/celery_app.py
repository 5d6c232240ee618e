"""The Celery application: broker from settings, no result backend (the database holds job state).

Importing this module must stay cheap (no torch): the API imports it to send tasks.
"""

from __future__ import annotations

from celery import Celery

from app.config import Settings, get_settings

TRAIN_TASK = "training.train"
TRIAL_TASK = "tuning.trial"
FINAL_TASK = "tuning.final"
RANK_TASK = "training.rank"
RETRAIN_CHECK_TASK = "retraining.check"
RETRAIN_TASK = "retraining.train"


def broker_options(settings: Settings) -> tuple[str, dict[str, object]]:
    """Broker URL and transport options; the embedded default is a folder, no server needed."""
    url = settings.resolved_broker_url
    if url.startswith("filesystem://"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return url, {
            # kombu's default control folder is ./control, relative to wherever the process was started.
            "control_folder": str(folder / "control"),
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        }
    return url, {"visibility_timeout": 24 * 3600}


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured for long, crash-safe training tasks."""
    url, transport_options = broker_options(settings)
    app = Celery("unfold", broker=url, include=["workers.tasks", "workers.ranks"])
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_ignore_result=True,
        # A task is acknowledged only when it finished, and redelivered if its worker died.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
        # Celery beat (`unfold beat`, or `unfold worker --beat`) sends the retrain check of aliases' policies. A
        # check older than its period is dropped: the next one does the same work.
        beat_schedule={
            RETRAIN_CHECK_TASK: {
                "task": RETRAIN_CHECK_TASK,
                "schedule": settings.retrain_check_seconds,
                "options": {"queue": settings.queue, "expires": settings.retrain_check_seconds},
            }
        },
        beat_schedule_filename=str((settings.var_dir / "celerybeat-schedule").resolve()),
    )
    return app


celery_app = create_celery(get_settings())
