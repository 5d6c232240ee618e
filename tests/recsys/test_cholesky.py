"""Batched per-row SPD solves: chunking, the exact answer, and the singular fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.recsys import cholesky
from app.recsys.interactions import Interactions


def _random_rows(seed: int, n_rows: int = 40, n_cols: int = 12) -> Interactions:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, n_cols, n_rows)
    users = np.repeat(np.arange(n_rows), lengths)
    items = np.concatenate([rng.choice(n_cols, size=k, replace=False) for k in lengths])
    return Interactions.from_coo(users, items, rng.random(users.shape[0]) + 0.1, n_users=n_rows, n_items=n_cols)


def _dense(rows: Interactions, weights: np.ndarray, shared: np.ndarray, Y: np.ndarray, b: np.ndarray) -> np.ndarray:
    W = np.zeros((rows.n_users, rows.n_items))
    W[rows.row_users(), rows.indices] = weights
    out = np.zeros((rows.n_users, Y.shape[1]))
    for u in np.flatnonzero(rows.user_counts()):
        out[u] = np.linalg.solve(shared + Y.T @ (W[u, :, None] * Y), b[u])
    return out


@pytest.mark.parametrize("budget", [cholesky.CHUNK_BYTES, 2048])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_solve_matches_dense(monkeypatch: pytest.MonkeyPatch, budget: int, sign: float) -> None:
    monkeypatch.setattr(cholesky, "CHUNK_BYTES", budget)  # 2048 bytes forces many tiny chunks
    rows = _random_rows(0)
    rng = np.random.default_rng(1)
    dim = 4
    Y = rng.normal(size=(rows.n_items, dim))
    # Negative weights take the general path; a large shared part keeps every A_u positive definite.
    weights = (sign * rows.weights).astype(np.float32)
    shared = np.eye(dim) * (30.0 if sign < 0 else 0.5)
    b = rng.normal(size=(rows.n_users, dim))
    b[rows.user_counts() == 0] = 0.0
    plan = cholesky.plan(rows, weights, dim, torch.device("cpu"))
    assert plan.sqrt_weights == (sign > 0)
    got = cholesky.solve(plan, torch.tensor(shared).float(), torch.tensor(Y).float(), torch.tensor(b).float())
    np.testing.assert_allclose(got.numpy(), _dense(rows, weights, shared, Y, b), atol=1e-4, rtol=1e-4)


def test_chunk_bounds_cover_rows_and_bound_padding() -> None:
    lengths = np.sort(np.random.default_rng(2).integers(1, 500, 1000))
    bounds = cholesky.chunk_bounds(lengths, dim=64)
    assert bounds[0][0] == 0 and bounds[-1][1] == lengths.shape[0]
    assert all(end == nxt for (_, end), (nxt, _) in zip(bounds, bounds[1:], strict=False))
    for start, end in bounds:
        assert end - start == 1 or lengths[end - 1] <= lengths[start] * cholesky.MAX_PADDING
        assert end - start == 1 or (end - start) * lengths[end - 1] * 64 * 4 <= cholesky.CHUNK_BYTES


def test_singular_systems_fall_back_to_least_squares() -> None:
    # One item per row and no shared part: A_u = w·y yᵀ has rank 1, so Cholesky fails.
    rows = Interactions.from_coo([0, 1], [0, 1], [2.0, 3.0])
    Y = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 4.0, 0.0], [0.0, 3.0, 3.0]])
    plan = cholesky.plan(rows, rows.weights, 3, torch.device("cpu"))
    got = cholesky.solve(plan, torch.zeros(3, 3), Y, b)
    # Minimum-norm solutions of w (y·x) y = b are x = y / (y·y).
    np.testing.assert_allclose(got.numpy(), [[0.2, 0.4, 0.0], [0.0, 0.5, 0.5]], atol=1e-5)
