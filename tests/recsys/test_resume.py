"""Resumable SGD across its variants, optimisers and samplers: the state carries parameters, optimiser
accumulators and the generator, so a resumed run is the straight one bit for bit; interrupt() stops a run
inside an epoch. What every model shares (WALS's resume, refusing a foreign state, …) is in
test_model_contract.py."""

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


def _assert_same_run(straight: Any, resumed: Any) -> None:
    assert np.array_equal(straight.user_factors, resumed.user_factors)
    assert np.array_equal(straight.item_factors, resumed.item_factors)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in straight.history]
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in straight.history], rtol=1e-6)


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
    _assert_same_run(straight, resumed)
    # Without the optimiser state and the generator the run is a different one: the state carries them.
    if config.optimizer != "sgd":
        zeroed = {n: (np.zeros_like(a) if n.startswith("optimizer_") else a) for n, a in state.arrays.items()}
        other = fit_sgd(data, config, resume=replace(state, arrays=zeroed))
        assert not np.array_equal(other.item_factors, straight.item_factors)


def test_resume_refuses_a_state_of_another_optimizer() -> None:
    states = States()
    fit_sgd(_data(), _sgd(epochs=2, optimizer="adam"), on_state=states)
    with pytest.raises(ValueError, match="optimizer"):
        fit_sgd(_data(), _sgd(epochs=3, optimizer="adagrad"), resume=states.by_step[1])  # adam's state


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
