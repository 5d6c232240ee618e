"""Train/test splits of an interaction matrix; every method partitions the nonzeros."""

from __future__ import annotations

import numpy as np

from app.recsys.interactions import Interactions

METHODS = ("random", "leave_last_out", "temporal", "none")


def split(
    data: Interactions, method: str, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Split interactions into (train, test) with the same shape; see METHODS."""
    if method not in METHODS:
        raise ValueError(f"split method must be one of {', '.join(METHODS)}, got {method!r}")
    if method in ("random", "temporal") and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if method == "none":
        test = np.zeros(data.nnz, dtype=bool)
    elif method == "random":
        # Each interaction independently goes to test with probability test_fraction.
        test = np.random.default_rng(seed).random(data.nnz) < test_fraction
    elif method == "leave_last_out":
        test = _latest_per_user(data)
    else:
        test = _after_cutoff(data, test_fraction)
    return data.filter(~test), data.filter(test)


def holdout_per_user(data: Interactions, fraction: float, seed: int = 0) -> tuple[Interactions, Interactions]:
    """Split into (fit, validation) holding out ⌊fraction·n_u⌉ of every user's interactions (at least one, and
    never all: a user with one interaction keeps it); the latest ones when timestamps exist, else random ones.

    Settings chosen on validation then see every user, as a per-interaction split would not guarantee for the
    many users of sparse data that have only a handful of interactions.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    counts = data.user_counts()
    held = np.minimum(np.maximum(np.rint(counts * fraction), 1), counts - 1).clip(min=0).astype(np.int64)
    # Rank every nonzero within its row: by time (latest last) or by a seeded random key.
    key = (
        data.timestamps.astype(np.float64)
        if data.timestamps is not None
        else np.random.default_rng(seed).random(data.nnz)
    )
    rows = data.row_users()
    order = np.lexsort((key, rows))  # rows stay contiguous, each sorted by its key
    rank = np.empty(data.nnz, dtype=np.int64)
    rank[order] = np.arange(data.nnz) - np.repeat(data.indptr[:-1], counts)
    validation = rank >= (counts - held)[rows]
    return data.filter(~validation), data.filter(validation)


def _require_timestamps(data: Interactions, method: str) -> np.ndarray:
    if data.timestamps is None:
        raise ValueError(f'split method "{method}" needs timestamps; use "random" for data without them')
    return data.timestamps


def _latest_per_user(data: Interactions) -> np.ndarray:
    """Mark each user's latest interaction (ties: the largest item index) for users with ≥2 interactions."""
    timestamps = _require_timestamps(data, "leave_last_out")
    test = np.zeros(data.nnz, dtype=bool)
    counts = data.user_counts()
    rows = np.flatnonzero(counts >= 2)
    if rows.size == 0:
        return test
    row_of = data.row_users()
    # Segment max over each chosen row (reduceat needs non-empty segments, so reduce over all non-empty rows).
    nonempty = np.flatnonzero(counts > 0)
    latest = np.zeros(data.n_users, dtype=np.int64)
    latest[nonempty] = np.maximum.reduceat(timestamps, data.indptr[nonempty])
    # Among the row's entries at its latest time, take the last position, i.e. the largest item index.
    position = np.where(timestamps == latest[row_of], np.arange(data.nnz, dtype=np.int64), -1)
    last = np.maximum.reduceat(position, data.indptr[nonempty])
    chosen = last[np.searchsorted(nonempty, rows)]
    test[chosen] = True
    return test


def _after_cutoff(data: Interactions, test_fraction: float) -> np.ndarray:
    """Mark interactions at or after the global (1 - test_fraction) timestamp quantile."""
    timestamps = _require_timestamps(data, "temporal")
    if data.nnz == 0:
        return np.zeros(0, dtype=bool)
    k = min(int(round((1.0 - test_fraction) * data.nnz)), data.nnz - 1)
    cutoff = np.partition(timestamps, k)[k]
    # Everything at the cutoff time goes to test so that every train time is strictly before every test time.
    result: np.ndarray = timestamps >= cutoff
    return result
