"""Fold-in (numpy, used by the API) gives a new user exactly the WALS half-step the worker would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.recsys.confidence import confidence
from app.recsys.fold_in import fold_in
from app.recsys.interactions import Interactions
from app.recsys.wals import WALSConfig, solve_rows


@pytest.mark.parametrize("scheme", ["linear", "log"])
@pytest.mark.parametrize("scaling", ["none", "frequency"])
def test_fold_in_equals_one_wals_half_step(scheme: str, scaling: str):
    rng = np.random.default_rng(3)
    n_items, dim = 30, 6
    V = rng.normal(size=(n_items, dim)).astype(np.float32)
    items = np.array([2, 5, 11, 17, 29])
    weights = np.array([1.0, 3.0, 2.0, 5.0, 1.0], dtype=np.float32)
    config = WALSConfig(
        dim=dim, l2=0.7, unobserved_weight=0.2, confidence=scheme, alpha=4.0, solver="cholesky", l2_scaling=scaling
    )

    row = Interactions.from_coo(np.zeros(len(items), dtype=np.int64), items, weights, n_users=1, n_items=n_items)
    expected = solve_rows(row, torch.from_numpy(V), config).numpy()[0]
    c = confidence(weights, scheme, config.alpha, config.eps)
    YtY = V.astype(np.float64).T @ V.astype(np.float64)
    got = fold_in(V, YtY, items, c, config.unobserved_weight, config.l2, config.l2_scaling, config.l2_exponent)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
