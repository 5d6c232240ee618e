"""Checkpoints in both artifact stores (a local folder, S3 on moto's server): a round trip keeps every
array and field, a checkpoint is replaced whole, a crash while writing one leaves the previous one,
and nothing but the job (same spec and data) that wrote it can resume from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.recsys.base import TrainingState
from app.services import checkpoints
from app.storage import ArtifactStore, open_store
from tests.s3 import CREDENTIALS, REGION, create_bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    if request.param == "local":
        return open_store(str(tmp_path / "artifacts"))
    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    root = f"s3://{create_bucket(endpoint)}/unfold"
    return open_store(root, Settings(var_dir=tmp_path / "var", s3_endpoint_url=endpoint, s3_region=REGION))


def _state(step: int, seed: int = 0) -> TrainingState:
    rng = np.random.default_rng(seed)
    arrays = {
        "table": rng.standard_normal((7, 3)).astype(np.float32),
        "optimizer_0": rng.random(7),  # float64 kept as float64
        "rng": rng.integers(0, 255, 16).astype(np.uint8),
    }
    return TrainingState("sgd", step, arrays, {"elapsed": 1.5, "history": [{"step": 1, "loss": 0.5}]})


def _checkpoint(step: int, seed: int = 0) -> checkpoints.Checkpoint:
    return checkpoints.Checkpoint(
        phase="fit",
        state=_state(step, seed),
        history=[{"step": s, "phase": "fit", "loss": 1.0 / s} for s in range(1, step + 1)],
        early_stopping={"best_value": float("-inf"), "best_step": 0},
        fit_result=None,
    )


def test_a_checkpoint_round_trips_whole(store: ArtifactStore):
    job_fingerprint = checkpoints.fingerprint({"dim": 3}, "a" * 64)
    assert checkpoints.load(store, "job_1", job_fingerprint) is None
    checkpoints.save(store, "job_1", job_fingerprint, _checkpoint(2))
    back = checkpoints.load(store, "job_1", job_fingerprint)
    assert back is not None and back.phase == "fit" and back.step == 2
    assert back.history == _checkpoint(2).history and back.early_stopping["best_value"] == float("-inf")
    assert back.state is not None and back.state.meta == _state(2).meta
    for name, array in _state(2).arrays.items():
        assert back.state.arrays[name].dtype == array.dtype and np.array_equal(back.state.arrays[name], array)
    # The phase boundary: no core state, the fit phase's results.
    boundary = checkpoints.Checkpoint("refit", None, [{"step": 1}], {}, {"metrics": {"recall@20": 0.3}, "best_step": 0})
    checkpoints.save(store, "job_1", job_fingerprint, boundary)
    back = checkpoints.load(store, "job_1", job_fingerprint)
    assert back is not None and (back.phase, back.state, back.step) == ("refit", None, 0)
    assert back.fit_result == {"metrics": {"recall@20": 0.3}, "best_step": 0}


def test_only_the_same_spec_and_data_resume(store: ArtifactStore):
    job_fingerprint = checkpoints.fingerprint({"dim": 3, "seed": 0}, "a" * 64)
    checkpoints.save(store, "job_1", job_fingerprint, _checkpoint(2))
    assert checkpoints.fingerprint({"seed": 0, "dim": 3}, "a" * 64) == job_fingerprint  # key order does not matter
    for other in (
        checkpoints.fingerprint({"dim": 4, "seed": 0}, "a" * 64),
        checkpoints.fingerprint({"dim": 3, "seed": 0}, "b" * 64),
    ):
        assert checkpoints.load(store, "job_1", other) is None
    assert checkpoints.load(store, "job_2", job_fingerprint) is None  # another job's
    checkpoints.delete(store, "job_1")
    checkpoints.delete(store, "job_1")  # idempotent
    assert checkpoints.load(store, "job_1", job_fingerprint) is None and not store.exists(
        checkpoints.checkpoint_key("job_1")
    )


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
):
    job_fingerprint = checkpoints.fingerprint({}, "c")
    checkpoints.save(store, "job_1", job_fingerprint, _checkpoint(2, seed=2))
    real_savez = np.savez

    def dies_half_way(path: Any, *args: Any, **kwargs: Any) -> None:
        real_savez(path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # half a file...
        raise OSError("disk gone")  # ...and the writer dies

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(OSError, match="disk gone"):
        checkpoints.save(store, "job_1", job_fingerprint, _checkpoint(3, seed=3))
    monkeypatch.setattr(np, "savez", real_savez)
    back = checkpoints.load(store, "job_1", job_fingerprint)
    assert back is not None and back.step == 2
    assert np.array_equal(back.state.arrays["table"], _state(2, seed=2).arrays["table"])  # type: ignore[union-attr]


def test_a_crash_in_the_publish_itself_leaves_the_previous_one(store: ArtifactStore, monkeypatch: pytest.MonkeyPatch):
    job_fingerprint = checkpoints.fingerprint({}, "c")
    checkpoints.save(store, "job_1", job_fingerprint, _checkpoint(2))
    staged: list[Path] = []

    def crash(key: str, directory: Path) -> None:
        staged.append(directory)
        raise ConnectionError("the worker died while publishing")

    monkeypatch.setattr(store, "publish_dir", crash)
    with pytest.raises(ConnectionError):
        checkpoints.save(store, "job_1", job_fingerprint, _checkpoint(5))
    assert staged and not staged[0].exists()  # the half-written version was thrown away
    monkeypatch.undo()
    back = checkpoints.load(store, "job_1", job_fingerprint)
    assert back is not None and back.step == 2


def test_arrays_that_would_need_pickle_are_refused(store: ArtifactStore):
    bad = checkpoints.Checkpoint("fit", TrainingState("sgd", 1, {"x": np.array([{"a": 1}], dtype=object)}, {}), [], {})
    with pytest.raises(ValueError, match="dtype object"):
        checkpoints.save(store, "job_1", "p", bad)
    assert not store.exists(checkpoints.checkpoint_key("job_1"))


def test_an_unreadable_checkpoint_means_starting_over(tmp_path: Path):
    store = open_store(str(tmp_path / "artifacts"))
    checkpoints.save(store, "job_1", "p", _checkpoint(2))
    directory = store.local_dir(checkpoints.checkpoint_key("job_1"))
    (directory / checkpoints.ARRAYS).write_bytes(b"not an npz")
    assert checkpoints.load(store, "job_1", "p") is None
    (directory / checkpoints.META).write_text("{not json")
    assert checkpoints.load(store, "job_1", "p") is None


def test_the_checkpointer_saves_at_most_every_period(tmp_path: Path):
    store = open_store(str(tmp_path / "artifacts"))
    now = [100.0]
    saver = checkpoints.Checkpointer(store, "job_1", "p", every=10.0, clock=lambda: now[0])
    assert saver.resumed is None and not saver.due()
    now[0] = 109.9
    assert not saver.due()
    now[0] = 110.0
    assert saver.due()
    saver.save(_checkpoint(1))
    assert not saver.due() and saver.saved == 1
    again = checkpoints.Checkpointer(store, "job_1", "p", every=0.0)
    assert again.due() and again.resume_state("fit") is not None and again.resume_state("refit") is None
