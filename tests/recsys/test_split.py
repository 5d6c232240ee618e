"""Splits partition the interactions; each method's rule holds."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys.interactions import Interactions
from app.recsys.split import split


def _data(timestamps: bool = True) -> Interactions:
    rng = np.random.default_rng(3)
    n = 400
    return Interactions.from_coo(
        rng.integers(0, 30, n),
        rng.integers(0, 50, n),
        rng.random(n) + 0.5,
        rng.integers(0, 40, n) if timestamps else None,  # few distinct times, so ties occur
        n_users=32,
        n_items=50,
    )


def _triples(data: Interactions) -> set[tuple[int, int, float, int]]:
    times = data.timestamps if data.timestamps is not None else np.zeros(data.nnz, np.int64)
    return set(
        zip(
            data.row_users().tolist(),
            data.indices.tolist(),
            data.weights.tolist(),
            times.tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("method", ["random", "leave_last_out", "temporal", "none"])
def test_split_partitions(method: str) -> None:
    data = _data()
    train, test = split(data, method, test_fraction=0.25, seed=7)
    assert (train.n_users, train.n_items) == (test.n_users, test.n_items) == (data.n_users, data.n_items)
    assert train.nnz + test.nnz == data.nnz
    assert _triples(train) | _triples(test) == _triples(data)
    assert not _triples(train) & _triples(test)


def test_random_split_is_seeded() -> None:
    data = _data(timestamps=False)
    train_a, test_a = split(data, "random", 0.3, seed=1)
    train_b, _ = split(data, "random", 0.3, seed=1)
    train_c, _ = split(data, "random", 0.3, seed=2)
    np.testing.assert_array_equal(train_a.indices, train_b.indices)
    assert not np.array_equal(train_a.indptr, train_c.indptr)
    assert 0.2 < test_a.nnz / data.nnz < 0.4


def test_leave_last_out_takes_each_users_latest() -> None:
    data = _data()
    train, test = split(data, "leave_last_out")
    counts = data.user_counts()
    np.testing.assert_array_equal(test.user_counts(), (counts >= 2).astype(np.int64))
    assert data.timestamps is not None and test.timestamps is not None and train.timestamps is not None
    for u in np.flatnonzero(counts >= 2):
        row = slice(data.indptr[u], data.indptr[u + 1])
        times, items = data.timestamps[row], data.indices[row]
        latest = times.max()
        (position,) = np.flatnonzero(test.row_users() == u)
        assert test.timestamps[position] == latest
        # Ties on the latest time go to the largest item index.
        assert test.indices[position] == items[times == latest].max()


def test_leave_last_out_keeps_single_interactions_in_train() -> None:
    data = Interactions.from_coo([0, 1, 1], [0, 0, 1], timestamps=[5, 1, 1])
    train, test = split(data, "leave_last_out")
    assert train.indptr.tolist() == [0, 1, 2] and test.indptr.tolist() == [0, 0, 1]
    assert test.indices.tolist() == [1]


def test_temporal_cutoff() -> None:
    data = _data()
    train, test = split(data, "temporal", test_fraction=0.2)
    assert train.timestamps is not None and test.timestamps is not None
    assert train.timestamps.max() < test.timestamps.min()
    assert 0.1 < test.nnz / data.nnz < 0.3


def test_none_has_empty_test() -> None:
    data = _data()
    train, test = split(data, "none")
    assert test.nnz == 0 and train.nnz == data.nnz


@pytest.mark.parametrize("method", ["leave_last_out", "temporal"])
def test_time_methods_need_timestamps(method: str) -> None:
    with pytest.raises(ValueError, match="needs timestamps"):
        split(_data(timestamps=False), method)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split method"):
        split(_data(), "shuffle")
    with pytest.raises(ValueError, match="test_fraction"):
        split(_data(), "random", test_fraction=1.0)
