"""The reaper and the reconciler (app/services/recovery.py), the lease that keeps a job to one live
attempt, duplicate messages (harmless), tuning trials sent again, and the worker's loop around them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.config import Settings
from app.db import get_sessionmaker
from app.models import Job, Model, utcnow
from app.services import checkpoints, job_state
from app.services.recovery import recover, task_kind
from app.storage import open_store
from tests.workers.conftest import Killed, Sent, job_row, make_stale
from workers.tasks import final_job, train_job, trial_job

SMALL = {"algorithm": "wals", "wals": {"iterations": 4, "l2": 1.0, "unobserved_weight": 0.1}, "search": {"mode": "off"}}


def _pass(sessions: Any, store: Any, sent: Sent, idle: bool = False, **kw: Any) -> Any:
    options = {"stale_after": 120.0, "requeue_after": 60.0, "max_attempts": 3} | kw
    return recover(sessions, store, sent, idle=idle, **options)


def test_the_reaper_sends_a_dead_job_again_and_leaves_live_ones_alone(settings, submit, sessions, store):
    dead, alive = submit(**SMALL), submit(**SMALL)
    for job_id in (dead, alive):
        assert job_state.claim(sessions, job_id, "w", stale_after=120)
    make_stale(sessions, dead, seconds=121)
    make_stale(sessions, alive, seconds=60)  # late, but not yet taken for dead
    sent = Sent()
    done = _pass(sessions, store, sent)
    assert done.requeued == [dead] and sent.messages == [(dead, "train")]
    assert job_row(sessions, dead).status == "queued" and job_row(sessions, alive).status == "running"
    # A second pass right after finds nothing to do: the job is queued, and was just sent.
    assert not _pass(sessions, store, sent) and len(sent.messages) == 1


def test_after_max_attempts_a_dead_job_fails_as_worker_lost_and_leaves_nothing(
    settings, submit, sessions, store, kill_at
):
    job_id = submit(**SMALL)
    for attempt in (1, 2, 3):
        kill_at("fit", 2)
        with pytest.raises(Killed):
            train_job(settings, job_id)
        assert job_row(sessions, job_id).attempts == attempt
        make_stale(sessions, job_id)
        sent = Sent()
        done = _pass(sessions, store, sent)
        if attempt < 3:
            assert done.requeued == [job_id] and sent.messages == [(job_id, "train")]
    assert done.failed == [job_id] and sent.messages == []
    job = job_row(sessions, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert job.error["type"] == "WorkerLost"
    assert job.error["message"].startswith("worker lost 3 times") and "max_attempts=3" in job.error["message"]
    assert not store.exists(checkpoints.checkpoint_key(job_id))
    assert train_job(settings, job_id) == "skipped"  # a late message for it changes nothing


def test_a_dead_job_with_a_cancel_request_ends_cancelled(settings, api, submit, sessions, store):
    job_id = submit(**SMALL)
    assert job_state.claim(sessions, job_id, "w", stale_after=120)
    assert api.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "running"  # asked, but the worker died
    make_stale(sessions, job_id)
    sent = Sent()
    assert _pass(sessions, store, sent).cancelled == [job_id] and sent.messages == []
    assert job_row(sessions, job_id).status == "cancelled"


def test_the_reconciler_resends_a_long_queued_job_only_from_an_idle_worker(settings, submit, sessions, store):
    job_id = submit(**SMALL)
    now = utcnow()
    sent = Sent()
    assert not _pass(sessions, store, sent, idle=True, now=now + timedelta(seconds=59))  # not long enough
    assert not _pass(sessions, store, sent, idle=False, now=now + timedelta(seconds=61))  # busy: no use sending
    done = _pass(sessions, store, sent, idle=True, now=now + timedelta(seconds=61))
    assert done.resent == [job_id] and sent.messages == [(job_id, "train")]
    # Sent again only once it has waited requeue_after since that send.
    assert not _pass(sessions, store, sent, idle=True, now=now + timedelta(seconds=100))
    assert _pass(sessions, store, sent, idle=True, now=now + timedelta(seconds=200)).resent == [job_id]
    assert job_row(sessions, job_id).status == "queued" and len(sent.messages) == 2
    assert train_job(settings, job_id) == "succeeded"
    assert train_job(settings, job_id) == "skipped"  # the duplicate
    assert job_row(sessions, job_id).attempts == 1


def test_task_kinds():
    assert [task_kind("train", None), task_kind("trial", "tun_1"), task_kind("train", "tun_1")] == [
        "train",
        "trial",
        "final",
    ]


def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(settings, submit, sessions):
    job_id = submit(**SMALL)
    first = job_state.claim(sessions, job_id, "w1", stale_after=120)
    assert first is not None and first.attempt == 1
    assert job_state.claim(sessions, job_id, "w2", stale_after=120) is None  # alive: not taken over
    make_stale(sessions, job_id)
    second = job_state.claim(sessions, job_id, "w2", stale_after=120)
    assert second is not None and second.attempt == 2
    reporter = job_state.JobReporter(sessions, first, heartbeat_seconds=30)
    with pytest.raises(job_state.LeaseLost):
        reporter.report({"step": 1}, {"step": 1})
    with pytest.raises(job_state.LeaseLost):
        reporter.interrupt()
    assert not job_state.finish(sessions, job_id, "failed", first, error={"type": "X", "message": "old worker"})
    assert not job_state.holds(sessions, first) and job_state.holds(sessions, second)
    job = job_row(sessions, job_id)
    assert (job.status, job.worker, job.error, job.progress) == ("running", "w2", None, None)


def test_the_heartbeat_thread_sees_a_cancel_and_a_lost_lease_for_interrupt(settings, api, submit, sessions):
    job_id = submit(**SMALL)
    lease = job_state.claim(sessions, job_id, "w", stale_after=120)
    assert lease is not None
    with job_state.JobReporter(sessions, lease, heartbeat_seconds=0.05) as reporter:
        reporter.interrupt()  # nothing yet
        api.post(f"/v1/jobs/{job_id}/cancel")
        _wait(lambda: reporter._cancel.is_set(), "the heartbeat thread to see the cancel")
        with pytest.raises(job_state.JobCancelled):
            reporter.interrupt()
    other = submit(**SMALL)
    lease = job_state.claim(sessions, other, "w", stale_after=120)
    assert lease is not None
    with job_state.JobReporter(sessions, lease, heartbeat_seconds=0.05) as reporter:
        with sessions() as session:
            session.execute(update(Job).where(Job.id == other).values(status="queued"))  # a reaper took it back
            session.commit()
        _wait(lambda: reporter._lost.is_set(), "the heartbeat thread to see the lost lease")
        with pytest.raises(job_state.LeaseLost):
            reporter.interrupt()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_cancel_stops_sgd_inside_an_epoch(settings, api, submit, sessions, monkeypatch):
    """interrupt() runs between mini-batches: a cancel seen by the heartbeat thread stops a long epoch."""
    import app.services.job_state as js

    monkeypatch.setattr(js, "WATCH_SECONDS", 0.05)
    spec = {
        "algorithm": "sgd",
        "sgd": {"variant": "minibatch_sgd", "epochs": 3, "batch_size": 2},
        "search": {"mode": "off"},
    }
    job_id = submit(**spec)
    real = js.JobReporter.interrupt
    calls = []

    def interrupt(self: js.JobReporter) -> None:
        calls.append(1)
        if len(calls) == 5:
            api.post(f"/v1/jobs/{job_id}/cancel")
            _wait(lambda: self._cancel.is_set(), "the cancel to be seen")
        real(self)

    monkeypatch.setattr(js.JobReporter, "interrupt", interrupt)
    assert train_job(settings.model_copy(update={"heartbeat_seconds": 0.05}), job_id) == "cancelled"
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["progress"] is None  # stopped inside epoch 1
    assert len(calls) == 5


# --- duplicates and races: SQLite here, PostgreSQL below -------------------------------------------------


def _duplicates_run_once(settings: Settings, job_id: str) -> None:
    """Two deliveries of one message at once: one attempt runs it, the other is skipped."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def deliver() -> None:
        barrier.wait()
        outcomes.append(train_job(settings, job_id))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["skipped", "succeeded"]
    sessions = get_sessionmaker(settings.resolved_database_url)
    job = job_row(sessions, job_id)
    assert job.attempts == 1 and [h["step"] for h in job.history if h["phase"] == "fit"] == [1, 2, 3, 4]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Model).where(Model.job_id == job_id)) == 1


def _reapers_race(settings: Settings, job_id: str) -> None:
    """Reapers of several workers at once on one dead job: exactly one sends it."""
    sessions = get_sessionmaker(settings.resolved_database_url)
    store = open_store(settings.resolved_artifact_root, settings)
    assert job_state.claim(sessions, job_id, "w", stale_after=120)
    make_stale(sessions, job_id)
    barrier = threading.Barrier(4)
    sent = Sent()

    def reap() -> None:
        barrier.wait()
        _pass(sessions, store, sent)

    threads = [threading.Thread(target=reap) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sent.messages == [(job_id, "train")]


def test_duplicate_messages_are_harmless_on_sqlite(settings, submit):
    _duplicates_run_once(settings, submit(**SMALL))


def test_reapers_racing_send_once_on_sqlite(settings, submit):
    _reapers_race(settings, submit(**SMALL))


@pytest.fixture
def pg_settings(tmp_path) -> Any:
    from app.migrate import upgrade
    from tests.services import postgres_database

    with postgres_database() as url:
        upgrade(url)
        yield Settings(
            var_dir=tmp_path / "var", database_url=url, task_always_eager=True, max_upload_mb=5, checkpoint_seconds=0
        )


@pytest.fixture
def pg_submit(pg_settings: Settings, tmp_path) -> Callable[..., str]:
    from fastapi.testclient import TestClient

    from app.api.app import create_app
    from tests.helpers import planted_csv, upload

    with TestClient(create_app(pg_settings)) as client:
        client.app.state.enqueue = lambda job_id: None
        ds = upload(client, planted_csv(tmp_path / "p.csv", n_users=80, n_items=40, per_user=10)).json()["id"]

        def submit_job(**spec: Any) -> str:
            return str(client.post("/v1/jobs", json={"dataset_id": ds, "dim": 6, **spec}).json()["id"])

        yield submit_job


@pytest.mark.integration
def test_duplicate_messages_are_harmless_on_postgresql(pg_settings, pg_submit):
    _duplicates_run_once(pg_settings, pg_submit(**SMALL))


@pytest.mark.integration
def test_reapers_racing_send_once_on_postgresql(pg_settings, pg_submit):
    _reapers_race(pg_settings, pg_submit(**SMALL))


# --- tuning trials go through the same path ----------------------------------------------------------------


def _tuning_run(api: Any, dataset: str, recorder: Any) -> dict[str, Any]:
    api.app.state.tuning_dispatch = recorder
    spec = {"dataset_id": dataset, "dim": 6, "wals": {"iterations": 4}}
    r = api.post("/v1/tuning", json={"spec": spec, "search": {"params": {"wals.l2": [0.1, 1.0]}}})
    assert r.status_code == 202, r.text
    return r.json()


class Recorder:
    def __init__(self) -> None:
        self.sent_trials: list[str] = []
        self.sent_finals: list[str] = []

    def trials(self, job_ids: Any) -> None:
        self.sent_trials += list(job_ids)

    def final(self, job_id: str) -> None:
        self.sent_finals.append(job_id)


def test_a_trial_whose_worker_died_is_sent_again_resumes_and_joins_its_run(
    settings, api, dataset, sessions, store, kill_at
):
    recorder = Recorder()
    run = _tuning_run(api, dataset, recorder)
    first, second = recorder.sent_trials
    assert trial_job(settings, first, worker="w1", dispatch=recorder) == "succeeded"
    kill_at("fit", 3)
    with pytest.raises(Killed):
        trial_job(settings, second, worker="w2", dispatch=recorder)
    assert store.exists(checkpoints.checkpoint_key(second)) and recorder.sent_finals == []
    make_stale(sessions, second)
    sent = Sent()
    assert _pass(sessions, store, sent).requeued == [second] and sent.messages == [(second, "trial")]

    assert trial_job(settings, second, worker="w3", dispatch=recorder) == "succeeded"
    trial = api.get(f"/v1/jobs/{second}").json()
    assert trial["attempts"] == 2 and trial["progress"]["resumed_from"]["step"] == 2
    assert [h["step"] for h in trial["history"]] == [1, 2, 3, 4]
    assert not store.exists(checkpoints.checkpoint_key(second))
    # The join happened on the resumed attempt: the final job was created and sent, once.
    final_id = api.get(f"/v1/tuning/{run['id']}").json()["final_job_id"]
    assert final_id and recorder.sent_finals == [final_id]
    assert task_kind(job_row(sessions, final_id).kind, job_row(sessions, final_id).tuning_id) == "final"
    assert final_job(settings, final_id) == "succeeded"
    done = api.get(f"/v1/tuning/{run['id']}").json()
    assert done["status"] == "succeeded" and done["model_id"] == job_state.model_id_for(final_id)
    assert {t["worker"] for t in done["leaderboard"]} == {"w1", "w3"}


def test_a_trial_lost_too_often_fails_and_its_join_still_creates_the_final_job(settings, api, dataset, sessions, store):
    recorder = Recorder()
    run = _tuning_run(api, dataset, recorder)
    first, second = recorder.sent_trials
    assert trial_job(settings, first, worker="w1", dispatch=recorder) == "succeeded"
    with sessions() as session:  # the second trial's workers all died: third attempt, silent
        session.execute(update(Job).where(Job.id == second).values(status="running", attempts=3, worker="w9"))
        session.commit()
    make_stale(sessions, second)
    sent = Sent()
    done = _pass(sessions, store, sent)
    assert done.failed == [second]
    final_id = api.get(f"/v1/tuning/{run['id']}").json()["final_job_id"]
    assert final_id and done.finals == [final_id] and sent.messages == [(final_id, "final")]
    board = api.get(f"/v1/tuning/{run['id']}").json()["leaderboard"]
    assert {t["job_id"]: t["status"] for t in board} == {first: "succeeded", second: "failed"}


def test_a_final_job_that_failed_as_worker_lost_fails_its_run(settings, api, dataset, sessions, store):
    recorder = Recorder()
    run = _tuning_run(api, dataset, recorder)
    for i, job_id in enumerate(recorder.sent_trials):
        assert trial_job(settings, job_id, worker=f"w{i}", dispatch=recorder) == "succeeded"
    (final_id,) = recorder.sent_finals
    with sessions() as session:
        session.execute(update(Job).where(Job.id == final_id).values(status="running", attempts=3, worker="w9"))
        session.commit()
    make_stale(sessions, final_id)
    assert _pass(sessions, store, Sent()).failed == [final_id]
    done = api.get(f"/v1/tuning/{run['id']}").json()
    # The run took its final job's outcome (sync_final), like a final job that failed on its own.
    assert done["status"] == "failed" and done["error"]["type"] == "WorkerLost" and done["model_id"] is None


# --- the worker's loop ---------------------------------------------------------------------------------------


class FakeCelery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], str]] = []

    def send_task(self, name: str, args: list[str], queue: str) -> None:
        self.sent.append((name, args, queue))


def test_the_worker_loop_sends_celery_tasks_and_reconciles_only_with_a_free_slot(settings, submit, sessions):
    from workers.recovery import RecoveryLoop

    settings = settings.model_copy(update={"requeue_after_seconds": 0.01, "queue": "q-test"})
    job_id = submit(**SMALL)
    celery = FakeCelery()
    busy = RecoveryLoop(settings, celery, slots=1, reserved=lambda: 1)  # type: ignore[arg-type]
    import time

    time.sleep(0.05)
    assert not busy.tick() and celery.sent == []
    idle = RecoveryLoop(settings, celery, slots=2, reserved=lambda: 1)  # type: ignore[arg-type]
    assert idle.tick().resent == [job_id]
    assert celery.sent == [("training.train", [job_id], "q-test")]
    assert idle.interval == pytest.approx(min(settings.heartbeat_seconds, 30.0))
    idle.start()
    idle.stop()
    assert not idle._thread.is_alive()
