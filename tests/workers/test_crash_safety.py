"""Crash-safe jobs, with a kill injected at every step that matters: an attempt killed mid-training is
reaped, sent again and resumes from its checkpoint to the model an uninterrupted run makes; a model is
visible only once its row is committed, a finished model is never lost nor made twice; cancellation
and failure leave no model, artifact or checkpoint behind."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from app.models import Job, Model
from app.recsys.artifact import load_model
from app.services import checkpoints, job_state, publishing, training
from app.services.models import model_key
from app.services.recovery import recover
from app.storage import open_store
from tests.workers.conftest import Killed, Sent, job_row, make_stale
from workers.tasks import train_job

# The fixed path (no settings search): these tests are about its checkpoints and resumes.
WALS = {"algorithm": "wals", "wals": {"iterations": 6, "l2": 1.0, "unobserved_weight": 0.1}, "search": {"mode": "off"}}
SGD = {
    "algorithm": "sgd",
    "sgd": {"variant": "minibatch_sgd", "epochs": 5, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.02},
    "search": {"mode": "off"},
}


def _reap(sessions: Any, store: Any, job_id: str) -> Sent:
    """The dead attempt's worker is gone: age its heartbeat and let a reaper pass send the job again."""
    make_stale(sessions, job_id)
    sent = Sent()
    done = recover(sessions, store, sent, stale_after=120, requeue_after=60, max_attempts=3, idle=False)
    assert done.requeued == [job_id] and sent.messages == [(job_id, "train")]
    assert job_row(sessions, job_id).status == "queued"
    return sent


def _models(sessions: Any) -> list[Model]:
    with sessions() as session:
        return list(session.scalars(select(Model)))


def _factors(store: Any, model_id: str) -> np.ndarray:
    return load_model(store.local_dir(model_key(model_id))).item_factors


@pytest.mark.parametrize(("spec", "phase", "step"), [(WALS, "fit", 4), (SGD, "fit", 3), (WALS, "refit", 3)])
def test_a_killed_job_resumes_from_its_checkpoint_to_the_uninterrupted_model(
    settings, api, submit, sessions, store, kill_at, spec, phase, step
):
    straight = submit(**spec)
    assert train_job(settings, straight) == "succeeded"
    straight_model = job_row(sessions, straight).model_id

    job_id = submit(**spec)
    kill_at(phase, step)
    with pytest.raises(Killed):
        train_job(settings, job_id)
    dead = job_row(sessions, job_id)
    assert (dead.status, dead.attempts) == ("running", 1)
    assert store.exists(checkpoints.checkpoint_key(job_id))
    _reap(sessions, store, job_id)

    assert train_job(settings, job_id) == "succeeded"
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["attempts"] == 2
    assert job["progress"]["resumed_from"] == {"phase": phase, "step": step - 1, "attempt": 2}
    # The history is the uninterrupted one: every step once, the lost step done again.
    expected = [(h["phase"], h["step"]) for h in api.get(f"/v1/jobs/{straight}").json()["history"]]
    assert [(h["phase"], h["step"]) for h in job["history"]] == expected
    # Exactly one model, with the id derived from the job's, and the model of the straight run.
    assert job["model_id"] == job_state.model_id_for(job_id)
    assert [m.id for m in _models(sessions) if m.job_id == job_id] == [job["model_id"]]
    np.testing.assert_allclose(_factors(store, job["model_id"]), _factors(store, straight_model), rtol=1e-5, atol=1e-6)
    assert (
        api.get(f"/v1/models/{job['model_id']}").json()["metrics"]
        == api.get(f"/v1/models/{straight_model}").json()["metrics"]
    )
    assert not store.exists(checkpoints.checkpoint_key(job_id))  # deleted when the job ended


def test_a_checkpoint_of_another_spec_is_not_resumed(settings, submit, sessions, store, kill_at):
    job_id = submit(**WALS)
    kill_at("fit", 3)
    with pytest.raises(Killed):
        train_job(settings, job_id)
    found = checkpoints.load(store, job_id, "another fingerprint")
    assert found is None
    _reap(sessions, store, job_id)
    with sessions() as session:  # the spec changed under the job: its checkpoint no longer fits
        row = session.get(Job, job_id)
        row.spec = {**row.spec, "dim": 5}
        session.commit()
    assert train_job(settings, job_id) == "succeeded"
    job = job_row(sessions, job_id)
    assert "resumed_from" not in job.progress and job.attempts == 2


def test_checkpoints_are_throttled(settings, submit, sessions, store, monkeypatch):
    saves: list[tuple[str, int]] = []
    real = checkpoints.save

    def counting(store_: Any, job_id: str, job_fingerprint: str, checkpoint: checkpoints.Checkpoint) -> None:
        saves.append((checkpoint.phase, checkpoint.step))
        real(store_, job_id, job_fingerprint, checkpoint)

    monkeypatch.setattr(checkpoints, "save", counting)
    job_id = submit(**WALS)
    assert train_job(settings.model_copy(update={"checkpoint_seconds": 3600}), job_id) == "succeeded"
    assert saves == [("refit", 0)]  # only the phase boundary, which is saved whatever the throttle
    saves.clear()
    assert train_job(settings, submit(**WALS)) == "succeeded"  # 0: every step of both phases
    assert saves == [("fit", s) for s in range(1, 7)] + [("refit", 0)] + [("refit", s) for s in range(1, 7)]


def test_checkpoints_hold_no_pickle(settings, submit, store, kill_at):
    job_id = submit(**SGD)
    kill_at("fit", 3)
    with pytest.raises(Killed):
        train_job(settings, job_id)
    directory = store.local_dir(checkpoints.checkpoint_key(job_id))
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint.json", "state.npz"]
    with np.load(directory / "state.npz", allow_pickle=False) as z:
        assert all(z[name].dtype != object for name in z.files)
        assert {"table", "rng", "optimizer_0", "optimizer_1", "optimizer_2"} == set(z.files)


# --- model visibility: a kill at every step between training and the committed row ---------------------


class Crash:
    """Wraps a function (a plain function, so it binds as a method too): kills the attempt before or after
    calling it, once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, when: str, only: Any = None) -> None:
        real = getattr(owner, name)
        self.armed = True

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            hit = self.armed and (only is None or only(*args))
            if hit and when == "before":
                self.armed = False
                raise Killed
            result = real(*args, **kwargs)
            if hit:
                self.armed = False
                raise Killed
            return result

        monkeypatch.setattr(owner, name, wrapper)


def _is_model_key(key: Any, *_: Any) -> bool:
    return isinstance(key, str) and key.startswith("models/")


@pytest.mark.parametrize(
    ("where", "published"),
    [
        ("save_model", False),  # killed while writing the staged files
        ("publish", True),  # killed right after the artifact became visible in the store
        ("checkpoint_delete", True),  # killed between dropping the checkpoint and the commit
        ("succeed", True),  # killed before the row's transaction
    ],
)
def test_a_kill_between_artifact_and_row_neither_loses_the_model_nor_makes_two(
    settings, api, submit, sessions, store, monkeypatch, where, published
):
    job_id = submit(**WALS)
    model_id = job_state.model_id_for(job_id)
    if where == "save_model":
        Crash(monkeypatch, publishing, "save_model", "before")
    elif where == "publish":
        Crash(monkeypatch, type(store), "publish_dir", "after", only=lambda self, key, *_: _is_model_key(key))
    elif where == "checkpoint_delete":
        Crash(monkeypatch, checkpoints, "delete", "after")
    else:
        Crash(monkeypatch, job_state, "succeed", "before")
    with pytest.raises(Killed):
        train_job(settings, job_id)
    assert store.exists(model_key(model_id)) == published
    assert _models(sessions) == []  # no row: the API shows no model, even when its files are there
    assert api.get(f"/v1/models/{model_id}").status_code == 404
    assert api.get(f"/v1/jobs/{job_id}").json()["model_id"] is None
    assert not list((store.root / ".tmp").iterdir())  # the staged files were discarded

    _reap(sessions, store, job_id)
    if published:
        # The second attempt records the published model without training again.
        monkeypatch.setattr(training, "load_version", lambda *a: pytest.fail("trained again"))
    assert train_job(settings, job_id) == "succeeded"
    assert [(m.id, m.job_id) for m in _models(sessions)] == [(model_id, job_id)]
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["model_id"] == model_id and job["attempts"] == 2
    assert [h["step"] for h in job["history"] if h["phase"] == "fit"] == [1, 2, 3, 4, 5, 6]
    # Training had ended: the second attempt starts after the last step (from the model, or the last checkpoint).
    assert job["progress"]["resumed_from"] == {"phase": "refit", "step": 6, "attempt": 2}
    assert job["progress"]["fraction"] == 1.0
    model = api.get(f"/v1/models/{model_id}").json()
    assert model["job_id"] == job_id and model["index"]["kind"] and "recall@20" in model["metrics"]
    assert api.get(f"/v1/models/{model_id}/users/u0/recommendations", params={"k": 3}).status_code == 200
    assert not store.exists(checkpoints.checkpoint_key(job_id))
    # A late duplicate of the message changes nothing.
    assert train_job(settings, job_id) == "skipped"
    assert len(_models(sessions)) == 1


def test_a_kill_after_the_commit_leaves_a_finished_job_and_nothing_else(settings, submit, sessions, store, monkeypatch):
    job_id = submit(**WALS)
    Crash(monkeypatch, job_state, "succeed", "after")
    with pytest.raises(Killed):
        train_job(settings, job_id)
    assert job_row(sessions, job_id).status == "succeeded"
    assert not store.exists(checkpoints.checkpoint_key(job_id))  # dropped before the commit
    assert train_job(settings, job_id) == "skipped"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Model)) == 1


def test_a_store_that_fails_to_checkpoint_or_tidy_up_does_not_fail_the_job(settings, submit, sessions, monkeypatch):
    def broken(*args: Any) -> None:
        raise ConnectionError("store away")

    monkeypatch.setattr(checkpoints, "save", broken)
    job_id = submit(**WALS)
    assert train_job(settings, job_id) == "succeeded"
    store_type = type(open_store(settings.resolved_artifact_root, settings))
    real_delete = store_type.delete

    def delete(self: Any, key: str) -> None:
        if key.startswith("jobs/"):
            raise ConnectionError("store away")
        real_delete(self, key)

    monkeypatch.setattr(store_type, "delete", delete)
    other = submit(**WALS)
    assert train_job(settings, other) == "succeeded"
    assert job_row(sessions, other).model_id == job_state.model_id_for(other)


# --- cancellation and failure leave nothing behind --------------------------------------------------------


def test_cancel_stops_a_running_job_at_its_next_step_and_leaves_nothing(
    settings, api, submit, sessions, store, monkeypatch
):
    job_id = submit(**{**WALS, "wals": {**WALS["wals"], "iterations": 50}})
    real = job_state.JobReporter.report
    seen: dict[str, Any] = {}

    def report(self: job_state.JobReporter, progress: dict[str, Any], entry: Any) -> None:
        if progress["step"] == 3 and not seen:
            seen["checkpoint"] = store.exists(checkpoints.checkpoint_key(job_id))
            assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        real(self, progress, entry)

    monkeypatch.setattr(job_state.JobReporter, "report", report)
    assert train_job(settings, job_id) == "cancelled"
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["model_id"] is None
    assert job["progress"]["step"] == 3  # the step that saw the request was the last one
    assert seen["checkpoint"]  # there was a checkpoint, and it is gone
    assert not store.exists(checkpoints.checkpoint_key(job_id))
    assert not store.exists(model_key(job_state.model_id_for(job_id)))
    assert _models(sessions) == []


def test_cancel_requested_during_the_final_steps_leaves_no_model(settings, api, submit, sessions, store, monkeypatch):
    """A cancel that lands after training, while the model is being published, still leaves nothing."""
    job_id = submit(**WALS)
    real = publishing._build_index

    def build_index(*args: Any) -> Any:
        api.post(f"/v1/jobs/{job_id}/cancel")
        return real(*args)

    monkeypatch.setattr(publishing, "_build_index", build_index)
    assert train_job(settings, job_id) == "cancelled"
    assert not store.exists(model_key(job_state.model_id_for(job_id)))
    assert not store.exists(checkpoints.checkpoint_key(job_id))
    assert _models(sessions) == []


def test_a_failed_job_leaves_no_checkpoint(settings, submit, sessions, store, monkeypatch):
    job_id = submit(**WALS)
    seen = []

    def broken_index(*args: Any) -> Any:
        seen.append(store.exists(checkpoints.checkpoint_key(job_id)))
        raise ValueError("index broke")

    monkeypatch.setattr(publishing, "_build_index", broken_index)
    assert train_job(settings, job_id) == "failed"
    assert seen == [True]  # a checkpoint was there when it failed
    job = job_row(sessions, job_id)
    assert job.error == {"type": "ValueError", "message": "index broke"}
    assert not store.exists(checkpoints.checkpoint_key(job_id))


def test_a_job_cancelled_while_it_waited_to_be_resent_loses_its_checkpoint(
    settings, api, submit, sessions, store, kill_at
):
    job_id = submit(**WALS)
    kill_at("fit", 3)
    with pytest.raises(Killed):
        train_job(settings, job_id)
    _reap(sessions, store, job_id)  # queued again, with its checkpoint
    assert api.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert store.exists(checkpoints.checkpoint_key(job_id))
    assert train_job(settings, job_id) == "skipped"  # the re-sent message arrives: it cleans up
    assert not store.exists(checkpoints.checkpoint_key(job_id))
