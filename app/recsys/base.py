"""The model interface shared by every training algorithm: callbacks, evaluators and the trained model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# callback(step, elapsed_seconds, loss, metrics) runs once per iteration/epoch with a 1-based step;
# returning True asks fit() to stop early, and an exception raised inside it propagates out of fit().
Callback = Callable[[int, float, float, dict[str, float]], bool | None]

# evaluator(user_factors, item_factors) -> metrics, called before the callback at every step when given.
Evaluator = Callable[[np.ndarray, np.ndarray], dict[str, float]]


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
