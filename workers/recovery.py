"""Every worker's reaper and reconciler: a thread in the worker's main process, started when the
worker is ready (the same in `unfold up`'s folder broker and on Redis; no beat process needed).

What a pass does is app/services/recovery.py's; this module only runs it every heartbeat period and
turns "send job X" into a Celery message. The main process outlives its pool's children, so a child
killed mid-job is reaped by its own worker, and a whole worker killed is reaped by any other one (or
by its replacement when it starts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from celery.worker import state as worker_state

from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.services import job_state
from app.services.recovery import Recovered, recover
from app.storage import open_store
from workers.celery_app import FINAL_TASK, TRAIN_TASK, TRIAL_TASK, celery_app

log = logging.getLogger(__name__)

TASK_NAMES = {"train": TRAIN_TASK, "trial": TRIAL_TASK, "final": FINAL_TASK}
# However long the heartbeat, look at least this often (and never more often than MIN_INTERVAL).
MAX_INTERVAL = 30.0
MIN_INTERVAL = 0.5


def _reserved() -> int:
    # Requests this worker has taken from the broker and not finished (running or waiting for a slot).
    return len(worker_state.reserved_requests)


class RecoveryLoop:
    """Runs recover() every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, settings: Settings, celery: Celery, slots: int, reserved: Callable[[], int] = _reserved) -> None:
        self.settings, self.celery, self.slots, self.reserved = settings, celery, slots, reserved
        self.sessions = get_sessionmaker(settings.resolved_database_url)
        self.store = open_store(settings.resolved_artifact_root, settings)
        self.interval = min(max(settings.heartbeat_seconds, MIN_INTERVAL), MAX_INTERVAL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="unfold-recovery")

    def send(self, job_id: str, kind: str) -> None:
        self.celery.send_task(TASK_NAMES[kind], args=[job_id], queue=self.settings.queue)

    def tick(self) -> Recovered:
        """One pass; the reconciler only runs while this worker has a free slot."""
        self.sweep()
        return recover(
            self.sessions,
            self.store,
            self.send,
            stale_after=job_state.stale_after(self.settings.heartbeat_seconds),
            requeue_after=self.settings.requeue_after_seconds,
            max_attempts=self.settings.max_attempts,
            idle=self.reserved() < self.slots,
        )

    def sweep(self) -> None:
        """The janitor: staging folders a killed process left behind (uploads run in the API, so any worker
        sharing the store cleans up after it too)."""
        try:
            removed = self.store.sweep_staging(self.settings.staging_max_age_seconds)
        except OSError:
            log.warning("staging sweep failed", exc_info=True)
            return
        if removed:
            log.info("janitor: removed %d stale staging folder(s): %s", len(removed), ", ".join(removed))

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # the database or broker is away: try again next period
                log.warning("recovery pass failed", exc_info=True)
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()
        log.info(
            "recovery: every %.1f s, reaping jobs silent for %.0f s, re-sending jobs queued for %.0f s",
            self.interval,
            job_state.stale_after(self.settings.heartbeat_seconds),
            self.settings.requeue_after_seconds,
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


_loop: RecoveryLoop | None = None


@worker_ready.connect  # type: ignore[untyped-decorator]  # celery ships no types
def start_recovery(sender: Any = None, **_: Any) -> None:
    """Start this worker's loop (the signal comes once, in the main process, after the pool started)."""
    global _loop
    settings = get_settings()
    controller = getattr(sender, "controller", None)
    slots = int(getattr(controller, "concurrency", None) or settings.worker_concurrency)
    _loop = RecoveryLoop(settings, celery_app, slots)
    _loop.start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def stop_recovery(**_: Any) -> None:
    if _loop is not None:
        _loop.stop()
