"""Job figures for /metrics: how many jobs are in each status, and the wall seconds of those that ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Job


@dataclass(frozen=True)
class Ended:
    """Jobs that started and ended with one status: how many, and their wall seconds from start to end."""

    status: str
    runs: int
    seconds: float


@dataclass(frozen=True)
class JobFigures:
    counts: dict[str, int]  # by status; a status no job has is missing
    ended: list[Ended]


def job_figures(sessions: sessionmaker[Session]) -> JobFigures:
    """Every job counted by status, and ended jobs' wall seconds summed in SQL by status, so a scrape stays
    two small queries however many jobs have run."""
    with sessions() as session:
        counts = {
            status: int(n) for status, n in session.execute(select(Job.status, func.count()).group_by(Job.status))
        }
        ended = session.execute(
            select(Job.status, func.count(), func.coalesce(func.sum(_job_seconds(session)), 0.0))
            .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
            .group_by(Job.status)
        ).all()
    return JobFigures(counts, [Ended(status, int(n), float(total)) for status, n, total in ended])


def _job_seconds(session: Session) -> ColumnElement[Any]:
    """finished_at − started_at in seconds, in the database's own date arithmetic."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0
