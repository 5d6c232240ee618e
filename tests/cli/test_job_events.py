"""GET /v1/jobs/{id}/events: progress events in order while a job runs, then one end event."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from app.services import job_events, job_state
from tests.helpers import planted_csv, upload

SMALL = {"dim": 8, "wals": {"iterations": 3}}


def _events(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE stream's lines, with comments as ("comment", text)."""
    out: list[tuple[str, Any]] = []
    event = None
    for line in lines:
        if line.startswith(":"):
            out.append(("comment", line[1:].strip()))
        elif line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            out.append((event, json.loads(line[len("data: ") :])))
    return out


@pytest.fixture
def dataset(client, tmp_path: Path) -> str:
    return upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr(job_events, "POLL_SECONDS", 0.02)


def test_a_finished_job_streams_its_last_progress_then_end(client, dataset: str):
    job = client.post("/v1/jobs", json={"dataset_id": dataset, **SMALL}).json()
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r.iter_lines())
    assert [e for e, _ in events] == ["progress", "end"]
    assert events[0][1]["status"] == "succeeded" and events[0][1]["progress"]["fraction"] == 1.0
    end = events[1][1]
    assert end["id"] == job["id"] and end["status"] == "succeeded" and end["model_id"]


def test_unknown_job_is_a_404_problem(client):
    r = client.get("/v1/jobs/job_missing/events")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "job_missing" in r.json()["detail"]


def _same_place(shown: dict[str, Any] | None, written: dict[str, Any]) -> bool:
    keys = ("phase", "step", "fraction", "phase_fraction")
    return shown is not None and all(shown.get(k) == written.get(k) for k in keys)


def test_events_follow_a_running_job_in_order(client, settings, dataset: str, fast_polls, monkeypatch):
    from workers.tasks import train_job

    # The stream polls; a tiny job can run a whole phase between two polls (CI saw search, then refit).
    # So each progress write waits until the stream has sent it: the test sees every write, in order.
    sent: list[dict[str, Any] | None] = []
    cond = threading.Condition()
    write = job_state.JobReporter.report

    def write_then_wait_for_the_stream(self, progress, entry):
        write(self, progress, entry)
        with cond:
            cond.wait_for(lambda: any(_same_place(p, progress) for p in sent), timeout=10)

    def watched(lines: Iterable[str]) -> Iterable[str]:
        for line in lines:
            if line.startswith("data: "):
                with cond:
                    sent.append(json.loads(line[len("data: ") :]).get("progress"))
                    cond.notify_all()
            yield line

    monkeypatch.setattr(job_state.JobReporter, "report", write_then_wait_for_the_stream)
    client.app.state.enqueue = lambda job_id: None  # queued until this test runs it
    job = client.post("/v1/jobs", json={"dataset_id": dataset, **SMALL}).json()
    worker = threading.Thread(target=train_job, args=(settings, job["id"]))
    events: list[tuple[str, Any]] = []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        lines = r.iter_lines()
        # The first event is the queued job; only then does the "worker" start.
        assert next(lines) == "id: 1" and next(lines) == "event: progress"
        first = json.loads(next(lines)[len("data: ") :])
        assert first == {"id": job["id"], "status": "queued", "progress": None}
        worker.start()
        events = _events(watched(lines))
    worker.join(timeout=60)
    names = [e for e, _ in events]
    assert names[-1] == "end" and names.count("end") == 1 and set(names[:-1]) == {"progress"}
    statuses = [d["status"] for e, d in events if e == "progress"]
    assert statuses[-1] == "succeeded" and "running" in statuses
    # One bar for the whole job: the phases come in order and the job's fraction never goes back.
    order = ["search", "fit", "evaluate", "refit", "publish"]
    shown = [d["progress"] for e, d in events if e == "progress" and d["progress"]]
    # (The finished job's last progress names the phase its training ended in, e.g. refit. It is written
    # before the status: a poll in between shows it once more while the job is still running.)
    phases = [order.index(p["phase"]) for p in shown if p != shown[-1]]
    fractions = [p["fraction"] for p in shown]
    assert phases == sorted(phases) and len(set(phases)) >= 3 and shown[-1]["phase"] in ("fit", "refit")
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and shown[-1]["eta_seconds"] == 0.0
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["model_id"]


def test_an_idle_stream_sends_keep_alives_and_ends_when_the_job_is_cancelled(
    client, dataset: str, fast_polls, monkeypatch
):
    monkeypatch.setattr(job_events, "KEEPALIVE_SECONDS", 0.0)
    client.app.state.enqueue = lambda job_id: None  # no worker: the job stays queued
    job = client.post("/v1/jobs", json={"dataset_id": dataset, **SMALL}).json()
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        lines = r.iter_lines()
        while next(lines) != ": keep-alive":
            pass
        threading.Thread(target=client.post, args=(f"/v1/jobs/{job['id']}/cancel",)).start()
        events = _events(lines)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled"
