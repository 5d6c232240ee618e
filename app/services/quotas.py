"""Per-tenant quota of concurrent training work: jobs queued or running, a tuning run counting one.

A tuning run counts as one, whatever its number of trials: the trials and the final retrain are
the run's own work, admitted with it (limiting its trials would make a search of 20 trials
impossible under a limit of 8). Plain training jobs count one each.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import TooManyRequests
from app.job_status import ACTIVE
from app.models import Job, TuningRun

SETTING = "UNFOLD_MAX_CONCURRENT_JOBS"
# Jobs take seconds to hours; this only tells a client not to retry in a tight loop.
RETRY_AFTER_SECONDS = 30


def active_work(session: Session, tenant: str) -> int:
    """Training jobs of `tenant` queued or running (outside tuning runs), plus its active tuning runs."""
    jobs = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant == tenant, Job.kind == "train", Job.tuning_id.is_(None), Job.status.in_(ACTIVE))
    )
    runs = session.scalar(
        select(func.count()).select_from(TuningRun).where(TuningRun.tenant == tenant, TuningRun.status.in_(ACTIVE))
    )
    return int(jobs or 0) + int(runs or 0)


def admit(session: Session, tenant: str, limit: int) -> None:
    """Call with the new job (or run) added to the session, before the commit: TooManyRequests, with
    the transaction rolled back, when it would take the tenant over `limit`.

    Submissions of one tenant are serialised so that two of them cannot both see room for one:
    on PostgreSQL by a transaction-scoped advisory lock per tenant, on SQLite because the INSERT
    takes the database's single write lock until the commit, so the count after it sees every
    other admission.
    """
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"unfold-jobs:{tenant}".encode()).digest()
        session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))
    session.flush()
    current = active_work(session, tenant) - 1  # without the one being admitted
    if current >= limit:
        session.rollback()
        raise TooManyRequests(
            f"tenant {tenant!r} already has {current} training jobs queued or running, the limit is {limit}"
            f" ({SETTING}; a tuning run counts as one); retry when one has finished",
            retry_after=RETRY_AFTER_SECONDS,
            limit=limit,
            current=current,
            setting=SETTING,
        )
