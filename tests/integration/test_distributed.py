"""Distributed jobs on the production shape (PostgreSQL, Redis, real `unfold worker` processes):

- a job with distributed.workers 2 runs as two ranks on two workers and ends with one model whose recall@20 is
  the single-worker job's (same seed, same settings);
- a rank SIGKILLed mid-fit fails its peer at once; the job goes back to the queue and a fresh pair of ranks
  resumes rank 0's checkpoint, ending with one model.
"""

from __future__ import annotations

import os
import re
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.job_status import FINISHED
from tests.integration.test_faults import _dataset, _ready, _wait, _worker, shape  # noqa: F401  # the fixture

pytestmark = pytest.mark.integration

SPEC = {
    "algorithm": "wals",
    "dim": 32,
    "seed": 3,
    "wals": {"iterations": 12, "l2": 0.05, "l2_scaling": "frequency"},
    "search": {"mode": "off"},
}


def _env(fixture: dict[str, Any]) -> None:
    fixture["env"].update(
        UNFOLD_RANK_QUEUE=f"{fixture['queue']}.ranks",
        UNFOLD_RENDEZVOUS_HOST="127.0.0.1",
        UNFOLD_RENDEZVOUS_TIMEOUT_SECONDS="60",
    )


def _finished(client: Any, job_id: str, logs: list[Path]) -> dict[str, Any]:
    return _wait(
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in FINISHED and j, 240, "the end", logs
    )


def _recall(client: Any, job: dict[str, Any]) -> float:
    assert job["status"] == "succeeded", job["error"]
    return float(client.get(f"/v1/models/{job['model_id']}").json()["metrics"]["recall@20"])


def test_two_ranks_on_two_workers_make_the_single_worker_model(shape: dict[str, Any]):  # noqa: F811
    _env(shape)
    started = time.monotonic()
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(shape["settings"])))
        workers = [_worker(stack, shape, name) for name in ("left", "right")]
        logs = [log for _, log in workers]
        ds = _dataset(client, shape["tmp"])
        for log in logs:
            _ready(log)
        job_id = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC, "distributed": {"workers": 2}}).json()["id"]
        job = _finished(client, job_id, logs)
        distributed_at = time.monotonic()
        single_id = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()["id"]
        single = _finished(client, single_id, logs)
    text = b"".join(log.read_bytes() for log in logs)
    assert f"job {job_id}: attempt 1 runs on 2 ranks".encode() in text
    assert f"job {job_id}: rank 1 done after 2 fit(s)".encode() in text  # the fit, then the refit
    models = [m for m in client.get("/v1/models", params={"limit": 500}).json()["items"] if m["job_id"] == job_id]
    assert [m["id"] for m in models] == [job["model_id"]]
    ours, theirs = _recall(client, job), _recall(client, single)
    assert abs(ours - theirs) <= 0.001, (ours, theirs)
    print(f"\nDISTRIBUTED 2 ranks: recall@20 {ours:.4f} against one worker's {theirs:.4f}; "
          f"{distributed_at - started:.1f} s to the model, test {time.monotonic() - started:.1f} s")  # fmt: skip


def test_a_rank_killed_mid_fit_requeues_the_job_and_fresh_ranks_finish_it(shape: dict[str, Any]):  # noqa: F811
    _env(shape)
    started = time.monotonic()
    spec = {**SPEC, "wals": {**SPEC["wals"], "iterations": 30, "solver": "cholesky"}}
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(shape["settings"])))
        workers = [_worker(stack, shape, name) for name in ("left", "right")]
        logs = [log for _, log in workers]
        ds = _dataset(client, shape["tmp"])
        for log in logs:
            _ready(log)
        job_id = client.post("/v1/jobs", json={"dataset_id": ds, **spec, "distributed": {"workers": 2}}).json()["id"]
        checkpoint = shape["tmp"] / "artifacts" / "jobs" / job_id / "checkpoint"
        pattern = re.compile(rf"job {job_id}: rank 1 of 2 \(attempt 1\) in process (\d+)".encode())

        def rank_1() -> int | None:
            found = [m for log in logs for m in pattern.findall(log.read_bytes())]
            return int(found[0]) if found else None

        pid = _wait(rank_1, 60, "rank 1 to start", logs)

        def mid_fit() -> bool:
            progress = client.get(f"/v1/jobs/{job_id}").json()["progress"] or {}
            return progress.get("phase") == "fit" and progress.get("step", 0) >= 3 and checkpoint.is_dir()

        _wait(mid_fit, 120, "step 3 of the fit with a checkpoint", logs)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        job = _finished(client, job_id, logs)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    resumed = job["progress"]["resumed_from"]
    assert resumed["phase"] == "fit" and resumed["step"] >= 1 and resumed["attempt"] == 2
    for phase in ("fit", "refit"):
        steps = [h["step"] for h in job["history"] if h["phase"] == phase]
        assert steps == list(range(1, spec["wals"]["iterations"] + 1)), (phase, steps)
    models = [m for m in client.get("/v1/models", params={"limit": 500}).json()["items"] if m["job_id"] == job_id]
    assert [m["id"] for m in models] == [job["model_id"]]
    assert not checkpoint.exists()
    text = b"".join(log.read_bytes() for log in logs)
    assert f"job {job_id}: attempt 1 lost a rank".encode() in text
    print(f"\nDISTRIBUTED sigkill: rank 1 killed, job resumed from fit step {resumed['step']} and succeeded "
          f"{time.monotonic() - killed_at:.1f} s after the kill; test {time.monotonic() - started:.1f} s")  # fmt: skip


def test_a_job_whose_ranks_cannot_all_join_fails_clearly(shape: dict[str, Any]):  # noqa: F811
    _env(shape)
    shape["env"]["UNFOLD_RENDEZVOUS_TIMEOUT_SECONDS"] = "5"
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(shape["settings"])))
        _, log = _worker(stack, shape, "alone")  # one worker, one task at a time: rank 1 never starts
        ds = _dataset(client, shape["tmp"])
        _ready(log)
        job_id = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC, "distributed": {"workers": 2}}).json()["id"]
        job = _finished(client, job_id, [log])
        # The rank task it sent runs once the worker is free, finds the attempt over and leaves.
        _wait(lambda: f"job {job_id}: rank 1 of attempt 1 is stale".encode() in log.read_bytes(), 30, "rank 1", [log])
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["type"] == "RanksMissing"
    assert "only 1 of 2 ranks joined within 5 s" in job["error"]["message"]
