"""A job's status (training jobs, tuning trials and tuning runs alike): the one list, and its groups."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job stands: queued, running, then succeeded, failed or cancelled (a tuning run too)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Not finished yet: waiting for a worker, or on one.
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
# Final: nothing will change the job again.
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
