"""Faults on the production shape (real PostgreSQL, real Redis, real `unfold worker` processes):

- the worker is SIGKILLed (its whole process group) mid-training: a new worker reaps the job, resumes
  it from its checkpoint, and it ends succeeded with one model;
- Redis restarts (no persistence) while a job is queued, so its message is gone: the reconciler sends
  it again, and the job runs exactly once even with a duplicate message in flight;
- the API process is killed mid-job and a new one started: status and progress read through it stay
  right while the worker carries on.

Each test runs its own redis-server on a free port (so it can kill it without touching the machine's),
a fresh PostgreSQL database, short settings (heartbeat 1 s, requeue after 3 s) and prints what it
measured (docs/reliability.md quotes these lines).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.job_status import FINISHED
from app.migrate import upgrade
from tests.helpers import planted_csv, upload
from tests.integration.conftest import free_port
from tests.services import postgres_database

pytestmark = pytest.mark.integration

# About 0.2 s per WALS iteration on one quiet thread (cholesky, dim 32): long enough to act mid-run,
# short enough for CI; the API test trains longer (dim 48, 40 iterations) so the job outlives an API restart.
DATA = {"n_users": 3000, "n_items": 1000, "per_user": 30}
# The fixed path (no settings search), whose fit checkpoints are what these faults test.
SPEC = {
    "algorithm": "wals",
    "dim": 32,
    "wals": {"iterations": 16, "solver": "cholesky", "l2": 1.0},
    "search": {"mode": "off"},
}
FAST = {
    "UNFOLD_HEARTBEAT_SECONDS": "1",
    "UNFOLD_REQUEUE_AFTER_SECONDS": "3",
    "UNFOLD_CHECKPOINT_SECONDS": "0.5",
    "UNFOLD_MAX_ATTEMPTS": "3",
    "UNFOLD_TORCH_THREADS": "1",
}


def _wait(predicate: Callable[[], Any], timeout: float, what: str, logs: list[Path] = ()) -> Any:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


@contextmanager
def group_process(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`unfold <args>` in a process group of its own (so SIGKILL can take every child with it)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UNFOLD_")} | env
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env=full_env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and all its children; return once none of them is left."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    def gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    _wait(gone, 10, "every process of the group to die")


class OwnRedis:
    """A redis-server of this test alone, without persistence: killing it loses every message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed; the fault tests need their own Redis")
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--daemonize", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._pings, 20, "redis-server to answer")

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.exceptions.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def shape(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """PostgreSQL database, own Redis, env for processes, settings for an in-process API."""
    own = OwnRedis(tmp_path)
    own.start()
    try:
        with postgres_database() as db_url:
            upgrade(db_url)
            queue = f"unfold-faults-{uuid.uuid4().hex[:8]}"
            env = {
                "UNFOLD_DATABASE_URL": db_url,
                "UNFOLD_BROKER_URL": own.url,
                "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
                "UNFOLD_QUEUE": queue,
                "UNFOLD_VAR_DIR": str(tmp_path / "var"),
                **FAST,
            }
            settings = Settings(
                database_url=db_url,
                broker_url=own.url,
                artifact_root=env["UNFOLD_ARTIFACT_ROOT"],
                queue=queue,
                var_dir=tmp_path / "api-var",
            )
            yield {"redis": own, "env": env, "settings": settings, "tmp": tmp_path, "queue": queue}
    finally:
        if own.proc is not None and own.proc.poll() is None:
            own.kill()


def _worker(stack: ExitStack, shape: dict[str, Any], name: str, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start an `unfold worker` (not waiting for it: it takes seconds to import torch)."""
    log = shape["tmp"] / f"{name}.log"
    node = f"{name}-{uuid.uuid4().hex[:6]}@%h"
    proc = stack.enter_context(group_process(["worker", "--name", node, *extra], shape["env"], shape["tmp"], log))
    return proc, log


def _ready(log: Path) -> None:
    _wait(lambda: b"ready" in log.read_bytes(), 90, f"{log.stem} to be ready", [log])


def _dataset(client: Any, tmp: Path) -> str:
    r = upload(client, planted_csv(tmp / "planted.csv", **DATA))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _one_model_answers(client: Any, job: dict[str, Any]) -> None:
    models = [m for m in client.get("/v1/models", params={"limit": 500}).json()["items"] if m["job_id"] == job["id"]]
    assert [m["id"] for m in models] == [job["model_id"]]
    recs = client.get(f"/v1/models/{job['model_id']}/users/u1/recommendations", params={"k": 5})
    assert recs.status_code == 200 and len(recs.json()["items"]) == 5


def _steps_once(job: dict[str, Any]) -> None:
    for phase in ("fit", "refit"):
        steps = [h["step"] for h in job["history"] if h["phase"] == phase]
        assert steps == list(range(1, SPEC["wals"]["iterations"] + 1)), (phase, steps)


def test_sigkill_of_the_worker_mid_training_resumes_on_a_new_worker(shape: dict[str, Any]):
    started = time.monotonic()
    tmp = shape["tmp"]
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(shape["settings"])))
        first, first_log = _worker(stack, shape, "doomed")
        ds = _dataset(client, tmp)  # while the worker starts
        _ready(first_log)
        job_id = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()["id"]
        checkpoint = tmp / "artifacts" / "jobs" / job_id / "checkpoint"

        def mid_fit() -> dict[str, Any] | None:
            job = client.get(f"/v1/jobs/{job_id}").json()
            progress = job["progress"] or {}
            ok = progress.get("phase") == "fit" and progress.get("fraction", 0) >= 0.2 and checkpoint.is_dir()
            return job if ok else None

        before = _wait(mid_fit, 60, "20 % of the fit with a checkpoint", [first_log])
        kill_group(first)
        killed_at = time.monotonic()
        assert first.poll() is not None
        last_step = max(before["progress"]["step"], client.get(f"/v1/jobs/{job_id}").json()["progress"]["step"])
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"  # nobody knows yet

        _, second_log = _worker(stack, shape, "rescuer")
        _ready(second_log)
        ready_at = time.monotonic()

        def resumed() -> dict[str, Any] | None:
            job = client.get(f"/v1/jobs/{job_id}").json()
            return job if job["attempts"] == 2 and (job["progress"] or {}).get("resumed_from") else None

        again = _wait(resumed, 60, "the job to resume on the new worker", [second_log])
        resumed_at = time.monotonic()
        job = _wait(
            lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in FINISHED and j,
            90,
            "the end",
            [second_log],
        )

        assert job["status"] == "succeeded", (job["error"], second_log.read_text()[-3000:])
        assert job["attempts"] == 2
        resumed_from = again["progress"]["resumed_from"]
        assert resumed_from["phase"] == "fit" and resumed_from["step"] > 0 and resumed_from["attempt"] == 2
        assert job["progress"]["resumed_from"] == resumed_from
        _steps_once(job)
        _one_model_answers(client, job)
        assert not checkpoint.exists()
        assert b"sent again for attempt 2" in second_log.read_bytes()
        lost = last_step - resumed_from["step"]
        assert 0 <= lost <= last_step
        print(
            f"\nFAULT sigkill: killed at fit step {last_step}/{SPEC['wals']['iterations']}; new worker ready "
            f"{ready_at - killed_at:.1f} s after the kill; resumed from step {resumed_from['step']} "
            f"{resumed_at - killed_at:.1f} s after the kill ({resumed_at - ready_at:.1f} s after ready); "
            f"{lost} iteration(s) redone; test {time.monotonic() - started:.1f} s"
        )


def test_redis_restarted_while_a_job_is_queued_still_runs_it_once(shape: dict[str, Any]):
    started = time.monotonic()
    own: OwnRedis = shape["redis"]
    with ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(shape["settings"])))
        ds = _dataset(client, shape["tmp"])
        job_id = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()["id"]
        assert own.client().llen(shape["queue"]) == 1  # the message is in Redis, and no worker runs
        own.kill()
        own.start()  # same port, no persistence: the message is gone
        assert own.client().llen(shape["queue"]) == 0
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"

        # Two slots, so a duplicate message would run at once if the lease let it.
        _, log = _worker(stack, shape, "after-restart", "--concurrency", "2")
        _ready(log)
        ready_at = time.monotonic()
        running = _wait(
            lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] != "queued" and j,
            60,
            "the job to start",
            [log],
        )
        running_at = time.monotonic()
        assert b"sent again (lost message?)" in log.read_bytes()
        # A duplicate delivery while it runs, on the worker's free slot: the claim must refuse it.
        from workers.celery_app import TRAIN_TASK, create_celery

        create_celery(shape["settings"]).send_task(TRAIN_TASK, args=[job_id], queue=shape["queue"])
        _wait(
            lambda: f"job {job_id} not claimed".encode() in log.read_bytes(), 60, "the duplicate to be refused", [log]
        )
        job = _wait(
            lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in FINISHED and j, 90, "the end", [log]
        )

        assert running["status"] in ("running", "succeeded")
        assert job["status"] == "succeeded", (job["error"], log.read_text()[-3000:])
        # One claim ever succeeded (every run takes one) and the history is one run's.
        assert job["attempts"] == 1
        _steps_once(job)
        _one_model_answers(client, job)
        print(
            f"\nFAULT redis-restart: queued job re-sent and started {running_at - ready_at:.1f} s after the worker "
            f"was ready (requeue_after 3 s); one claim, duplicate refused; test {time.monotonic() - started:.1f} s"
        )


def test_api_restarted_mid_job_keeps_status_and_progress_right(shape: dict[str, Any]):
    started = time.monotonic()
    port = free_port()
    env = shape["env"] | {"UNFOLD_PORT": str(port), "UNFOLD_API_WORKERS": "1"}
    tmp = shape["tmp"]
    spec = {**SPEC, "dim": 48, "wals": {**SPEC["wals"], "iterations": 40}, "evaluation": {"split": "none"}}

    def answers(client: httpx.Client) -> bool:
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    with ExitStack() as stack:
        _, worker_log = _worker(stack, shape, "steady")
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        first_log = tmp / "api-1.log"
        first = stack.enter_context(group_process(["api"], env, tmp, first_log))
        _wait(lambda: answers(client), 60, "the first API", [first_log])
        ds = _dataset(client, tmp)
        _ready(worker_log)
        job_id = client.post("/v1/jobs", json={"dataset_id": ds, **spec}).json()["id"]

        def mid_fit() -> dict[str, Any] | None:
            job = client.get(f"/v1/jobs/{job_id}").json()
            return job if (job["progress"] or {}).get("step", 0) >= 3 and job["progress"]["phase"] == "fit" else None

        before = _wait(mid_fit, 60, "the job to be mid-fit", [worker_log])
        kill_group(first)
        killed_at = time.monotonic()
        with pytest.raises(httpx.TransportError):
            client.get(f"/v1/jobs/{job_id}")

        second_log = tmp / "api-2.log"
        stack.enter_context(group_process(["api"], env, tmp, second_log))
        _wait(lambda: answers(client), 60, "the second API", [second_log])
        back_at = time.monotonic()
        after = client.get(f"/v1/jobs/{job_id}").json()
        # The worker never noticed: the same attempt, further on, still running.
        assert after["attempts"] == 1 and after["status"] == "running", after
        assert (after["progress"]["phase"], after["progress"]["step"]) >= ("fit", before["progress"]["step"])
        assert after["started_at"] == before["started_at"]
        seen = [after["progress"]["step"]]
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] == "running":
            if job["progress"]["phase"] == "fit":
                assert job["progress"]["step"] >= seen[-1]  # progress never goes back
                seen.append(job["progress"]["step"])
            time.sleep(0.2)
            assert time.monotonic() - back_at < 90, "the job did not finish"
        assert job["status"] == "succeeded" and job["attempts"] == 1, job["error"]
        steps = [h["step"] for h in job["history"] if h["phase"] == "fit"]
        assert steps == list(range(1, spec["wals"]["iterations"] + 1))
        _one_model_answers(client, job)
        print(
            f"\nFAULT api-restart: API down {back_at - killed_at:.1f} s at fit step {before['progress']['step']}; "
            f"the new API read step {after['progress']['step']} of the same attempt; "
            f"test {time.monotonic() - started:.1f} s"
        )
