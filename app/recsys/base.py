"""The model interface shared by every training algorithm: callbacks, evaluators and the trained model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# callback(step, elapsed_seconds, loss, metrics) runs once per iteration/epoch with a 1-based step;
# returning True asks fit() to stop early, and an exception raised inside it propagates out of fit().
# loop.run_steps owns the order of a step's calls (step, evaluator, history, callback, on_state) for every fit.
Callback = Callable[[int, float, float, dict[str, float]], bool | None]

# evaluator(user_factors, item_factors) -> metrics, called before the callback at every step when given.
Evaluator = Callable[[np.ndarray, np.ndarray], dict[str, float]]


@dataclass(frozen=True, eq=False)
class TrainingState:
    """What fit() needs to go on after `step` completed steps as if it had never stopped.

    `arrays` are numpy arrays (factors, optimiser state, RNG state as uint8), `meta` is JSON-able
    (history so far, elapsed seconds): a caller can store both without pickle and hand them back.
    """

    algorithm: str
    step: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


# on_state(step, capture) runs after the callback at every step boundary (unless the callback asked to stop);
# capture() copies the state out, so a caller that saves only now and then pays only when it saves.
StateCallback = Callable[[int, Callable[[], TrainingState]], None]

# interrupt() runs often inside a step (between batches, between half-steps); it returns nothing and stops
# training by raising, e.g. when a cancel was requested. Its exception propagates out of fit().
Interrupt = Callable[[], None]


def check_resume(state: TrainingState, algorithm: str, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """ValueError unless `state` was captured by `algorithm` with arrays of these shapes."""
    if state.algorithm != algorithm:
        raise ValueError(f"cannot resume {algorithm} from a {state.algorithm} state")
    if state.step < 0:
        raise ValueError(f"a resumed state needs step >= 0, got {state.step}")
    for name, shape in shapes.items():
        array = state.arrays.get(name)
        if array is None or tuple(array.shape) != shape:
            got = None if array is None else tuple(array.shape)
            raise ValueError(f"resumed state array {name!r} has shape {got}, expected {shape}")


@dataclass(frozen=True, eq=False)
class EmbeddingModel:
    """Trained user and item embeddings (numpy, so serving needs no torch) plus how they were made."""

    user_factors: np.ndarray  # float32 (n_users, dim)
    item_factors: np.ndarray  # float32 (n_items, dim)
    algorithm: str
    config: dict[str, Any]  # the dataclass config as a plain dict
    history: list[dict[str, Any]]  # one entry per step: {"step", "loss", "seconds", "metrics"}

    def __post_init__(self) -> None:
        for name in ("user_factors", "item_factors"):
            factors = getattr(self, name)
            if not isinstance(factors, np.ndarray) or factors.ndim != 2 or factors.dtype != np.float32:
                raise ValueError(f"{name} must be a 2-d float32 numpy array")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ValueError(
                f"user and item factors must share a dimension, got {self.user_factors.shape[1]} "
                f"and {self.item_factors.shape[1]}"
            )

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.user_factors.shape[1])

    @property
    def n_users(self) -> int:
        """Number of users (rows of user_factors)."""
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items (rows of item_factors)."""
        return int(self.item_factors.shape[0])


def history_entry(step: int, loss: float, seconds: float, metrics: dict[str, float]) -> dict[str, Any]:
    """Return one history record in the shape EmbeddingModel.history uses."""
    return {"step": step, "loss": loss, "seconds": seconds, "metrics": dict(metrics)}
