"""Warm start: the rows of a new factor matrix that an earlier model knows, taken from that model by id."""

from __future__ import annotations

import numpy as np


def warm_factors(
    init: np.ndarray, ids: np.ndarray, known_ids: np.ndarray, known_factors: np.ndarray
) -> tuple[np.ndarray, int]:
    """`init` (one row per id) with each id that `known_ids` holds set to its row of `known_factors`;
    returns the matrix and how many rows came from the earlier model."""
    if init.shape[0] != ids.shape[0]:
        raise ValueError(f"init has {init.shape[0]} rows for {ids.shape[0]} ids")
    if known_factors.shape != (known_ids.shape[0], init.shape[1]):
        raise ValueError(
            f"known_factors must have shape ({known_ids.shape[0]}, {init.shape[1]}), got {known_factors.shape}"
        )
    where = {name: i for i, name in enumerate(known_ids.tolist())}
    rows = np.array([where.get(name, -1) for name in ids.tolist()], dtype=np.int64)
    hit = rows >= 0
    out = np.array(init, dtype=np.float32, copy=True)
    out[hit] = known_factors[rows[hit]]
    return out, int(hit.sum())
