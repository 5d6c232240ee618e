"""The command line a new user meets: refusals exit non-zero, tables fit the terminal."""

from __future__ import annotations

from tests.cli.conftest import Unfold


def test_cancelling_a_finished_job_exits_3_and_says_it_had_ended(unfold: Unfold, dataset: str):
    with unfold.jobs_stay_queued():
        job_id = unfold("train", "-d", dataset, "-q").stdout.strip()
    assert unfold("jobs", "cancel", job_id).exit_code == 0
    again = unfold("jobs", "cancel", job_id)
    assert again.exit_code == 3, again.output
    assert "409" in again.stderr and "was already cancelled" in again.stderr and "nothing was cancelled" in again.stderr
