"""Interactions: COO → CSR construction, duplicate merging, transpose and helpers."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys.interactions import Interactions


def _dense(data: Interactions) -> np.ndarray:
    return np.asarray(data.to_scipy().todense())


def test_from_coo_sums_duplicates_and_keeps_latest_time() -> None:
    data = Interactions.from_coo(
        users=[1, 0, 1, 1, 0],
        items=[2, 1, 0, 2, 1],
        weights=[1.0, 2.0, 3.0, 4.0, 0.5],
        timestamps=[10, 20, 30, 5, 7],
    )
    assert (data.n_users, data.n_items, data.nnz) == (2, 3, 3)
    assert data.indptr.tolist() == [0, 1, 3]
    assert data.indices.tolist() == [1, 0, 2]
    assert data.weights.tolist() == [2.5, 3.0, 5.0]
    assert data.timestamps is not None and data.timestamps.tolist() == [20, 30, 10]
    assert data.indptr.dtype == np.int64 and data.indices.dtype == np.int32
    assert data.weights.dtype == np.float32 and data.timestamps.dtype == np.int64


def test_from_coo_sorts_rows_and_defaults_weights() -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 20, 300), rng.integers(0, 30, 300)
    data = Interactions.from_coo(users, items, n_users=25, n_items=40)
    assert (data.n_users, data.n_items) == (25, 40)
    expected = np.zeros((25, 40))
    np.add.at(expected, (users, items), 1.0)
    np.testing.assert_array_equal(_dense(data), expected)
    for u in range(data.n_users):
        row = data.indices[data.indptr[u] : data.indptr[u + 1]]
        assert np.all(np.diff(row) > 0)


def test_transpose_round_trip_and_counts() -> None:
    rng = np.random.default_rng(1)
    n = 200
    data = Interactions.from_coo(rng.integers(0, 15, n), rng.integers(0, 9, n), rng.random(n), rng.integers(0, 1000, n))
    transposed = data.transpose()
    np.testing.assert_array_equal(_dense(transposed), _dense(data).T)
    back = transposed.transpose()
    for name in ("indptr", "indices", "weights", "timestamps"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    np.testing.assert_array_equal(data.user_counts(), (_dense(data) > 0).sum(1))
    np.testing.assert_array_equal(data.item_counts(), (_dense(data) > 0).sum(0))
    np.testing.assert_array_equal(data.row_users(), np.repeat(np.arange(15), data.user_counts()))


def test_filter_and_select_rows() -> None:
    data = Interactions.from_coo([0, 0, 1, 2, 2, 2], [0, 3, 1, 0, 2, 3], [1, 2, 3, 4, 5, 6])
    kept = data.filter(data.weights > 2.5)
    assert (kept.n_users, kept.n_items) == (3, 4)
    assert kept.indptr.tolist() == [0, 0, 1, 4] and kept.weights.tolist() == [3, 4, 5, 6]
    picked = data.select_rows(np.array([2, 0]))
    assert picked.n_users == 2
    np.testing.assert_array_equal(_dense(picked), _dense(data)[[2, 0]])


def test_empty_matrix() -> None:
    data = Interactions.from_coo(np.zeros(0, np.int64), np.zeros(0, np.int64), n_users=3, n_items=2)
    assert data.nnz == 0 and data.indptr.tolist() == [0, 0, 0, 0]
    assert data.transpose().indptr.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"indices": np.array([1, 0])}, "sorted and unique"),
        ({"indices": np.array([0, 7])}, "item indices must lie"),
        ({"indptr": np.array([0, 1, 2])}, "indptr must have shape"),
        ({"indptr": np.array([0, 1])}, "end at len"),
        ({"weights": np.array([1.0, np.nan])}, "finite"),
        ({"timestamps": np.array([1])}, "timestamps must have shape"),
    ],
)
def test_validation_rejects_bad_arrays(kwargs: dict[str, np.ndarray], message: str) -> None:
    fields = {
        "n_users": 1,
        "n_items": 3,
        "indptr": np.array([0, 2]),
        "indices": np.array([0, 1]),
        "weights": np.array([1.0, 1.0]),
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Interactions(**fields)  # type: ignore[arg-type]


def test_from_coo_rejects_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="exceed"):
        Interactions.from_coo([0, 3], [0, 1], n_users=2)
    with pytest.raises(ValueError, match=">= 0"):
        Interactions.from_coo([0, -1], [0, 1])
