"""The contract every model keeps, run for each algorithm (and WALS solver / SGD variant) from one module.

What a caller of fit(train, config, callback, evaluator, resume=, on_state=, interrupt=) relies on, as
implicit's RecommenderBaseTestMixin checks for its models: the model it returns, seeded determinism, the
callback/evaluator/on_state order (app/recsys/loop.py), exceptions from callbacks and interrupt() propagating,
resuming from a state stored without pickle, and a model surviving save/load. Tiny data: seconds in all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.recsys.artifact import ModelArtifact, load_model, save_model
from app.recsys.base import EmbeddingModel, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.sgd import fit_sgd
from app.recsys.sgd_config import NegativeConfig, SGDConfig
from app.recsys.wals import WALSConfig, fit_wals

STEPS = 4


@dataclass(frozen=True)
class Model:
    name: str
    algorithm: str
    fit: Callable[..., EmbeddingModel]
    config: Any  # a frozen config dataclass with `seed` and STEPS steps
    rebuild: Callable[[dict[str, Any]], Any]  # the config from its asdict(), as a stored model keeps it
    exact_resume: bool  # bit-identical after a resume (SGD), or equal to float32 rounding (WALS's solves)


def _sgd(variant: str) -> SGDConfig:
    negatives = NegativeConfig(strategy="uniform", per_positive=2)
    return SGDConfig(
        dim=4, epochs=STEPS, batch_size=16, variant=variant, optimizer="adam", device="cpu", negatives=negatives
    )


MODELS = [
    Model(
        "wals-cg", "wals", fit_wals, WALSConfig(dim=4, iterations=STEPS, device="cpu"), lambda c: WALSConfig(**c), False
    ),
    Model(
        "wals-cholesky",
        "wals",
        fit_wals,
        WALSConfig(dim=4, iterations=STEPS, solver="cholesky", device="cpu"),
        lambda c: WALSConfig(**c),
        False,
    ),
    Model("sgd-minibatch", "sgd", fit_sgd, _sgd("minibatch_sgd"), lambda c: SGDConfig(**c), True),
    Model("sgd-sequential", "sgd", fit_sgd, _sgd("sgd"), lambda c: SGDConfig(**c), True),
]


@pytest.fixture(params=MODELS, ids=[m.name for m in MODELS])
def model(request: pytest.FixtureRequest) -> Model:
    return request.param


def _data(n_users: int = 40) -> Interactions:
    """A seeded 40 × 30 matrix with 300 weighted interactions; user 39 has none."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 39, 300), rng.integers(0, 30, 300)
    weights = rng.integers(1, 5, 300).astype(np.float32)
    return Interactions.from_coo(users, items, weights, n_users=n_users, n_items=30)


class States:
    """An on_state that captures every step's state at once (a real caller saves only now and then)."""

    def __init__(self) -> None:
        self.by_step: dict[int, TrainingState] = {}

    def __call__(self, step: int, capture: Callable[[], TrainingState]) -> None:
        self.by_step[step] = capture()


class Stop(Exception):
    pass


def _assert_same_factors(a: EmbeddingModel, b: EmbeddingModel, exact: bool = True) -> None:
    if exact:
        np.testing.assert_array_equal(a.user_factors, b.user_factors)
        np.testing.assert_array_equal(a.item_factors, b.item_factors)
    else:
        np.testing.assert_allclose(a.user_factors, b.user_factors, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.item_factors, b.item_factors, rtol=1e-5, atol=1e-6)


def test_the_model_has_the_promised_shape(model: Model) -> None:
    data = _data()
    fitted = model.fit(data, model.config)
    assert fitted.algorithm == model.algorithm
    assert fitted.user_factors.shape == (40, 4) and fitted.item_factors.shape == (30, 4)
    assert fitted.user_factors.dtype == np.float32 and fitted.item_factors.dtype == np.float32
    assert fitted.config == asdict(model.config)
    assert [h["step"] for h in fitted.history] == list(range(1, STEPS + 1))
    assert all(set(h) == {"step", "loss", "seconds", "metrics"} and h["metrics"] == {} for h in fitted.history)
    assert all(np.isfinite(h["loss"]) for h in fitted.history)
    seconds = [h["seconds"] for h in fitted.history]
    assert seconds == sorted(seconds)


def test_a_seed_gives_the_same_model_and_another_seed_another(model: Model) -> None:
    data = _data()
    first, second = model.fit(data, model.config), model.fit(data, model.config)
    _assert_same_factors(first, second)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    other = model.fit(data, replace(model.config, seed=model.config.seed + 1))
    assert not np.array_equal(first.item_factors, other.item_factors)


def test_callback_evaluator_and_state_run_in_order_every_step(model: Model) -> None:
    events: list[tuple[str, int]] = []
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    seen: list[tuple[int, float, dict[str, float]]] = []

    def evaluator(users: np.ndarray, items: np.ndarray) -> dict[str, float]:
        events.append(("evaluator", len(events)))
        shapes.append((users.shape, items.shape))
        return {"norm": float(np.linalg.norm(users @ items.T))}

    def callback(step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> None:
        events.append(("callback", step))
        seen.append((step, loss, metrics))

    def on_state(step: int, capture: Callable[[], TrainingState]) -> None:
        events.append(("state", step))

    fitted = model.fit(_data(), model.config, callback, evaluator, on_state=on_state)
    kinds = [kind for kind, _ in events]
    assert kinds == ["evaluator", "callback", "state"] * STEPS
    assert [step for kind, step in events if kind != "evaluator"] == [s for s in range(1, STEPS + 1) for _ in (0, 1)]
    assert shapes == [((40, 4), (30, 4))] * STEPS
    assert [(h["step"], h["loss"], h["metrics"]) for h in fitted.history] == seen
    # The last metrics were measured on the factors the model returns.
    final = float(np.linalg.norm(fitted.user_factors @ fitted.item_factors.T))
    assert fitted.history[-1]["metrics"]["norm"] == pytest.approx(final, rel=1e-6)


def test_the_evaluator_gets_copies(model: Model) -> None:
    def vandal(users: np.ndarray, items: np.ndarray) -> dict[str, float]:
        users.fill(0.0)
        items.fill(0.0)
        return {}

    data = _data()
    _assert_same_factors(model.fit(data, model.config, evaluator=vandal), model.fit(data, model.config))


def test_a_callback_can_stop_the_run_and_no_state_is_captured_for_that_step(model: Model) -> None:
    seen: list[tuple[int, float]] = []

    def callback(step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> bool:
        seen.append((step, loss))
        return step == 2

    states = States()
    fitted = model.fit(_data(), model.config, callback, on_state=states)
    assert [step for step, _ in seen] == [1, 2]
    assert [(h["step"], h["loss"]) for h in fitted.history] == seen
    assert sorted(states.by_step) == [1]


def test_an_exception_in_a_callback_propagates(model: Model) -> None:
    def callback(step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> None:
        if step == 2:
            raise Stop

    def evaluator(users: np.ndarray, items: np.ndarray) -> dict[str, float]:
        raise Stop

    states = States()
    with pytest.raises(Stop):
        model.fit(_data(), model.config, callback, on_state=states)
    assert sorted(states.by_step) == [1]
    with pytest.raises(Stop):
        model.fit(_data(), model.config, evaluator=evaluator)


def test_interrupt_runs_inside_every_step_and_its_exception_stops_the_run(model: Model) -> None:
    data = _data()
    calls: list[int] = []  # interrupt() calls made before each step's callback
    count = [0]

    def counting() -> None:
        count[0] += 1

    model.fit(data, model.config, lambda step, *_: calls.append(count[0]), interrupt=counting)
    assert all(later > earlier for earlier, later in zip([0, *calls], calls, strict=False)), calls

    # The very first call; the last one of step 1 (WALS: between its half-steps); the first one of step 2.
    for raise_at in (1, calls[0], calls[0] + 1):
        steps: list[int] = []

        def interrupt(raise_at: int = raise_at) -> None:
            count[0] += 1
            if count[0] == raise_at:
                raise Stop

        count[0] = 0
        with pytest.raises(Stop):
            model.fit(data, model.config, lambda step, *_, steps=steps: steps.append(step), interrupt=interrupt)
        assert steps == ([] if raise_at <= calls[0] else [1])


def _stored(state: TrainingState, folder: Path) -> TrainingState:
    """The state after a trip through files without pickle: arrays in an .npz, meta as JSON."""
    np.savez(folder / "state.npz", allow_pickle=False, **state.arrays)
    (folder / "state.json").write_text(json.dumps({"algorithm": state.algorithm, "step": state.step, **state.meta}))
    meta = json.loads((folder / "state.json").read_text())
    with np.load(folder / "state.npz", allow_pickle=False) as arrays:
        return TrainingState(meta.pop("algorithm"), meta.pop("step"), dict(arrays), meta)


@pytest.mark.parametrize("k", [1, STEPS - 1, STEPS])
def test_a_run_resumed_from_a_stored_state_is_the_straight_run(model: Model, k: int, tmp_path: Path) -> None:
    data = _data()
    states = States()
    straight = model.fit(data, model.config, on_state=states)
    assert sorted(states.by_step) == list(range(1, STEPS + 1))
    state = _stored(states.by_step[k], tmp_path)
    assert state.step == k and state.algorithm == model.algorithm
    assert [h["step"] for h in state.meta["history"]] == list(range(1, k + 1))
    seen: list[int] = []
    resumed = model.fit(data, model.config, lambda step, *_: seen.append(step), resume=state)
    assert seen == list(range(k + 1, STEPS + 1))  # only the remaining steps run
    _assert_same_factors(straight, resumed, exact=model.exact_resume)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]
    losses = [h["loss"] for h in resumed.history]
    if model.exact_resume:
        assert losses == [h["loss"] for h in straight.history]
    else:
        assert losses == pytest.approx([h["loss"] for h in straight.history], rel=1e-6)


def test_a_captured_state_does_not_change_when_training_goes_on(model: Model) -> None:
    captured: dict[int, TrainingState] = {}
    copies: dict[int, dict[str, np.ndarray]] = {}

    def on_state(step: int, capture: Callable[[], TrainingState]) -> None:
        if step == 1:
            captured[step] = capture()
            copies[step] = {name: array.copy() for name, array in captured[step].arrays.items()}

    model.fit(_data(), model.config, on_state=on_state)
    assert captured[1].arrays.keys() == copies[1].keys()
    for name, array in captured[1].arrays.items():
        np.testing.assert_array_equal(array, copies[1][name])


def test_a_state_of_other_data_or_another_algorithm_is_refused(model: Model) -> None:
    data = _data()
    states = States()
    model.fit(data, replace(model.config, **{_steps_field(model): 1}), on_state=states)
    with pytest.raises(ValueError, match="shape"):
        model.fit(_data(n_users=41), model.config, resume=states.by_step[1])
    other = next(m for m in MODELS if m.algorithm != model.algorithm)
    foreign = States()
    other.fit(data, replace(other.config, **{_steps_field(other): 1}), on_state=foreign)
    with pytest.raises(ValueError, match=f"cannot resume {model.algorithm} from a {other.algorithm} state"):
        model.fit(data, model.config, resume=foreign.by_step[1])


def _steps_field(model: Model) -> str:
    return "iterations" if model.algorithm == "wals" else "epochs"


def test_a_model_survives_save_and_load(model: Model, tmp_path: Path) -> None:
    data = _data()
    fitted = model.fit(data, model.config)
    ids = np.array([f"u{i}" for i in range(data.n_users)]), np.array([f"i{i}" for i in range(data.n_items)])
    meta = {"algorithm": fitted.algorithm, "config": fitted.config, "history": fitted.history}
    artifact = ModelArtifact(fitted.user_factors, fitted.item_factors, *ids, data.indptr, data.indices, meta)
    save_model(tmp_path / "model", artifact)
    loaded = load_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.user_factors, fitted.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, fitted.item_factors)
    assert loaded.user_factors.dtype == np.float32 and loaded.dim == 4
    np.testing.assert_array_equal(loaded.user_ids, ids[0])
    np.testing.assert_array_equal(loaded.seen(0), data.indices[data.indptr[0] : data.indptr[1]])
    assert loaded.meta["algorithm"] == model.algorithm and loaded.meta["history"] == fitted.history
    # The stored config is enough to train the same model again.
    assert model.rebuild(loaded.meta["config"]) == model.config
