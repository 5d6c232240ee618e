"""Resumable training: the state each fit exposes at a step boundary continues the run as if it had never
stopped (WALS: factors; SGD: parameters, optimiser accumulators and the generator), a state from other data
or another algorithm is refused, and interrupt() stops a run inside an epoch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from app.recsys.base import TrainingState
from app.recsys.interactions import Interactions
from app.recsys.sgd import fit_sgd
from app.recsys.sgd_config import NegativeConfig, SGDConfig
from app.recsys.wals import WALSConfig, fit_wals


def _data(seed: int = 0, n_users: int = 40, n_items: int = 30, nnz: int = 300) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz)
    return Interactions.from_coo(users, items, n_users=n_users, n_items=n_items)


class States:
    """An on_state that captures every step's state (a real caller saves only now and then)."""

    def __init__(self) -> None:
        self.by_step: dict[int, TrainingState] = {}

    def __call__(self, step: int, capture: Callable[[], TrainingState]) -> None:
        self.by_step[step] = capture()


def _assert_same_run(straight: Any, resumed: Any, exact: bool) -> None:
    if exact:
        assert np.array_equal(straight.user_factors, resumed.user_factors)
        assert np.array_equal(straight.item_factors, resumed.item_factors)
    else:
        np.testing.assert_allclose(resumed.user_factors, straight.user_factors, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(resumed.item_factors, straight.item_factors, rtol=1e-5, atol=1e-6)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in straight.history], rtol=1e-6)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
@pytest.mark.parametrize("k", [1, 3])
def test_wals_resumed_from_iteration_k_is_the_straight_run(solver: str, k: int) -> None:
    data = _data()
    config = WALSConfig(dim=6, iterations=5, l2=1.0, unobserved_weight=0.1, solver=solver)
    states = States()
    straight = fit_wals(data, config, on_state=states)
    assert sorted(states.by_step) == [1, 2, 3, 4, 5]
    state = states.by_step[k]
    assert state.step == k and state.algorithm == "wals"
    assert [h["step"] for h in state.meta["history"]] == list(range(1, k + 1))
    seen: list[int] = []
    resumed = fit_wals(data, config, lambda step, *_: seen.append(step), resume=state)
    assert seen == list(range(k + 1, 6))  # only the remaining iterations run
    _assert_same_run(straight, resumed, exact=False)


def test_a_captured_state_does_not_change_when_training_goes_on() -> None:
    data = _data()
    states = States()
    fit_wals(data, WALSConfig(dim=4, iterations=3, l2=1.0, unobserved_weight=0.1), on_state=states)
    assert not np.array_equal(states.by_step[1].arrays["user_factors"], states.by_step[3].arrays["user_factors"])


def _sgd(**kwargs: Any) -> SGDConfig:
    negatives = NegativeConfig(
        **({"strategy": "uniform", "per_positive": 2, "hard_candidates": 4} | kwargs.pop("neg", {}))
    )
    base: dict[str, Any] = {"dim": 4, "epochs": 5, "batch_size": 16, "device": "cpu", "learning_rate": 0.05}
    return SGDConfig(**(base | kwargs), negatives=negatives)


SGD_CASES = [
    {"variant": "minibatch_sgd", "optimizer": "adam", "loss": "bce"},
    {"variant": "minibatch", "optimizer": "adagrad", "loss": "bpr"},
    {"variant": "minibatch_sgd", "optimizer": "adam", "loss": "softmax", "neg": {"strategy": "in_batch"}},
    {"variant": "sgd", "optimizer": "adagrad", "loss": "bce"},
    {"variant": "sgd", "optimizer": "adam", "loss": "bce", "neg": {"strategy": "hard"}},
    {"variant": "sgd", "optimizer": "sgd", "loss": "mse", "neg": {"strategy": "popularity"}},
]


@pytest.mark.parametrize("case", SGD_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_sgd_resumed_from_epoch_k_is_the_straight_run(case: dict[str, Any]) -> None:
    data = _data()
    config = _sgd(**dict(case))
    states = States()
    straight = fit_sgd(data, config, on_state=states)
    state = states.by_step[2]
    assert state.algorithm == "sgd" and state.arrays["rng"].dtype == np.uint8
    resumed = fit_sgd(data, config, resume=state)
    # Same parameters, accumulators and random stream: bit for bit the uninterrupted run.
    _assert_same_run(straight, resumed, exact=True)
    # Without the optimiser state and the generator the run is a different one: the state carries them.
    if config.optimizer != "sgd":
        zeroed = {n: (np.zeros_like(a) if n.startswith("optimizer_") else a) for n, a in state.arrays.items()}
        other = fit_sgd(data, config, resume=replace(state, arrays=zeroed))
        assert not np.array_equal(other.item_factors, straight.item_factors)


def test_resume_refuses_a_state_of_other_data_or_another_algorithm() -> None:
    data = _data()
    wals_states, sgd_states = States(), States()
    fit_wals(data, WALSConfig(dim=4, iterations=2, l2=1.0), on_state=wals_states)
    fit_sgd(data, _sgd(epochs=2, optimizer="adam"), on_state=sgd_states)
    bigger = _data(n_users=41)
    with pytest.raises(ValueError, match="user_factors"):
        fit_wals(bigger, WALSConfig(dim=4, iterations=3, l2=1.0), resume=wals_states.by_step[1])
    with pytest.raises(ValueError, match="cannot resume wals from a sgd state"):
        fit_wals(data, WALSConfig(dim=4, iterations=3, l2=1.0), resume=sgd_states.by_step[1])
    with pytest.raises(ValueError, match="table"):
        fit_sgd(data, _sgd(epochs=3, dim=5, optimizer="adam"), resume=sgd_states.by_step[1])
    with pytest.raises(ValueError, match="optimizer"):
        fit_sgd(data, _sgd(epochs=3, optimizer="adagrad"), resume=sgd_states.by_step[1])  # adam's state


def test_a_state_at_the_last_step_returns_the_finished_model() -> None:
    data = _data()
    config = WALSConfig(dim=4, iterations=2, l2=1.0)
    states = States()
    straight = fit_wals(data, config, on_state=states)
    calls: list[int] = []
    again = fit_wals(data, config, lambda step, *_: calls.append(step), resume=states.by_step[2])
    assert calls == [] and np.array_equal(again.user_factors, straight.user_factors)


def test_no_state_is_captured_after_the_callback_asked_to_stop() -> None:
    states = States()
    fit_sgd(_data(), _sgd(epochs=5), lambda step, *_: step == 2, on_state=states)
    assert sorted(states.by_step) == [1]


class Stop(Exception):
    pass


@pytest.mark.parametrize("variant", ["minibatch_sgd", "sgd"])
def test_interrupt_stops_sgd_inside_an_epoch(variant: str) -> None:
    data = _data(nnz=600)
    calls = []

    def interrupt() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    epochs: list[int] = []
    # Pure SGD checks between blocks of examples: a small block size makes one epoch several blocks.
    import app.recsys.sgd as sgd_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sgd_module, "_BLOCK", 64)
        with pytest.raises(Stop):
            fit_sgd(
                data, _sgd(variant=variant, batch_size=64), lambda step, *_: epochs.append(step), interrupt=interrupt
            )
    assert epochs == []  # stopped inside the first epoch, before any callback


def test_interrupt_stops_wals_between_half_steps() -> None:
    calls = []

    def interrupt() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Stop

    steps: list[int] = []
    with pytest.raises(Stop):
        fit_wals(_data(), WALSConfig(dim=4, iterations=3, l2=1.0), lambda s, *_: steps.append(s), interrupt=interrupt)
    assert steps == []
