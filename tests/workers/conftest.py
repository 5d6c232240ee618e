"""Jobs run by hand: a migrated SQLite database, an API for uploads and submissions (nothing is sent to a
queue: the tests deliver the tasks themselves), and a way to kill an attempt at a chosen point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.config import Settings
from app.db import get_sessionmaker
from app.models import Job, utcnow
from app.services import job_state
from app.storage import open_store
from tests.helpers import planted_csv, upload


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler in the job's code sees it; the row stays running."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Checkpoint at every step so an attempt killed at step k left step k - 1.
    return Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5, checkpoint_seconds=0)


@pytest.fixture
def api(client: Any) -> Any:
    """The API client with a queue that drops every message: jobs stay queued until a test runs them."""
    client.app.state.enqueue = lambda job_id: None
    return client


@pytest.fixture
def dataset(api: Any, tmp_path: Path) -> str:
    r = upload(api, planted_csv(tmp_path / "p.csv", n_users=80, n_items=40, per_user=10))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture
def submit(api: Any, dataset: str) -> Callable[..., str]:
    def submit_job(**spec: Any) -> str:
        r = api.post("/v1/jobs", json={"dataset_id": dataset, "dim": 6, **spec})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    return submit_job


@pytest.fixture
def sessions(settings: Settings) -> Any:
    return get_sessionmaker(settings.resolved_database_url)


@pytest.fixture
def store(settings: Settings) -> Any:
    return open_store(settings.resolved_artifact_root, settings)


@pytest.fixture
def kill_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, int], None]]:
    """kill_at(phase, step): the next attempt dies (Killed) when it reports that step."""
    real = job_state.JobReporter.report
    target: dict[str, Any] = {}

    def report(self: job_state.JobReporter, progress: dict[str, Any], entry: dict[str, Any] | None) -> None:
        if target and (progress["phase"], progress["step"]) == (target["phase"], target["step"]):
            target.clear()  # once: the next attempt runs through
            raise Killed
        real(self, progress, entry)

    monkeypatch.setattr(job_state.JobReporter, "report", report)

    def arm(phase: str, step: int) -> None:
        target.update(phase=phase, step=step)

    yield arm


def make_stale(sessions: Any, job_id: str, seconds: float = 3600) -> None:
    """Age a running job's heartbeat as if its worker had died `seconds` ago."""
    with sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))
        session.commit()


def job_row(sessions: Any, job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


class Sent:
    """A Send that records (job_id, kind) instead of using a broker."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, job_id: str, kind: str) -> None:
        self.messages.append((job_id, kind))
