"""`unfold jobs watch`: live progress from server-sent events (or polling), the job's outcome as exit code."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from app.client import api
from app.services import job_events
from tests.cli.conftest import Unfold

LONGER = ["--set", "dim=8", "--set", "wals.iterations=15"]


@pytest.fixture
def seen(monkeypatch) -> list[tuple[str, Any]]:
    """Every event the client reads from the events endpoint."""
    events: list[tuple[str, Any]] = []
    original = api.UnfoldClient.job_events

    def recording(self: api.UnfoldClient, job_id: str) -> Iterator[tuple[str, Any]]:
        for event in original(self, job_id):
            events.append(event)
            yield event

    monkeypatch.setattr(api.UnfoldClient, "job_events", recording)
    monkeypatch.setattr(job_events, "POLL_SECONDS", 0.02)  # the server runs in this process
    return events


def _queued_job(unfold: Unfold, dataset: str, *args: str) -> tuple[str, threading.Timer]:
    """A job that stays queued until the returned timer (started by the caller) sends it."""
    real_enqueue = unfold.server.app.state.enqueue
    with unfold.jobs_stay_queued():
        result = unfold("train", "-d", dataset, "-q", *args)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    return job_id, threading.Timer(0.3, real_enqueue, [job_id])


def test_watch_follows_a_running_job_live_and_exits_0(unfold: Unfold, dataset: str, seen, monkeypatch):
    job_id, release = _queued_job(unfold, dataset, *LONGER)
    recording = api.UnfoldClient.job_events

    # Send the job only once the watcher has read its first event, so the stream starts at "queued"
    # however slowly the command starts on a busy machine (a fixed delay raced it in CI).
    def release_after_first_event(self: api.UnfoldClient, job_id: str) -> Iterator[tuple[str, Any]]:
        for i, event in enumerate(recording(self, job_id)):
            if i == 0:
                release.start()
            yield event

    monkeypatch.setattr(api.UnfoldClient, "job_events", release_after_first_event)
    result = unfold("jobs", "watch", job_id)
    release.join()
    assert result.exit_code == 0, result.output
    assert f"succeeded {job_id}: model mdl_" in result.stdout
    assert "15/15 iterations" in result.stderr  # the bar's last state
    statuses = [data["status"] for event, data in seen if event == "progress"]
    assert statuses[0] == "queued" and "running" in statuses
    steps = [data["progress"]["step"] for event, data in seen if event == "progress" and data["progress"]]
    assert len(steps) >= 2
    assert seen[-1][0] == "end" and seen[-1][1]["status"] == "succeeded"


def test_watch_polls_when_asked_or_when_events_are_unavailable(unfold: Unfold, dataset: str, seen, monkeypatch):
    job_id, release = _queued_job(unfold, dataset, *LONGER)
    release.start()
    result = unfold("jobs", "watch", job_id, "--poll", "--poll-interval", "0.05")
    release.join()
    assert result.exit_code == 0, result.output
    assert seen == []

    def unavailable(self: api.UnfoldClient, job_id: str) -> Iterator[tuple[str, Any]]:
        raise api.EventsUnavailable("GET /v1/jobs/x/events answered 404")
        yield  # a generator, like the real method

    monkeypatch.setattr(api.UnfoldClient, "job_events", unavailable)
    job_id, release = _queued_job(unfold, dataset, *LONGER)
    release.start()
    result = unfold("jobs", "watch", job_id, "--poll-interval", "0.05")
    release.join()
    assert result.exit_code == 0, result.output
    assert f"succeeded {job_id}" in result.stdout


def test_a_failed_job_exits_1_with_its_error(unfold: Unfold, dataset: str):
    # The planted file has no timestamps, so a temporal split fails inside the job (not at submit).
    result = unfold("train", "-d", dataset, "--set", "evaluation.split=temporal", "--watch")
    assert result.exit_code == 1, result.output
    assert "failed" in result.stdout and "needs timestamps" in result.stdout
    job_id = result.stdout.split()[1]
    watched = unfold("jobs", "watch", job_id)
    assert watched.exit_code == 1 and "needs timestamps" in watched.stdout


def test_a_cancelled_job_exits_2(unfold: Unfold, dataset: str):
    with unfold.jobs_stay_queued():
        job_id = unfold("train", "-d", dataset, "-q").stdout.strip()
    assert unfold("jobs", "cancel", job_id).exit_code == 0
    result = unfold("jobs", "watch", job_id)
    assert result.exit_code == 2 and f"cancelled {job_id}" in result.stdout


def test_watching_an_unknown_job_exits_3(unfold: Unfold):
    result = unfold("jobs", "watch", "job_nope")
    assert result.exit_code == 3 and "404" in result.stderr
