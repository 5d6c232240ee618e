"""WALS with the recommended settings (WALSConfig's defaults) beats the popularity baseline on MovieLens 100K."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.recsys.interactions import Interactions
from app.recsys.metrics import popularity_metrics, ranking_metrics
from app.recsys.split import split
from app.recsys.wals import WALSConfig, fit_wals

pytestmark = pytest.mark.data


def _ml100k(shared_data: Path) -> Interactions:
    raw = np.loadtxt(shared_data / "ml-100k" / "u.data", dtype=np.int64)  # user item rating timestamp, 1-based
    return Interactions.from_coo(raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 2], raw[:, 3])


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_default_wals_beats_popularity_on_ml100k(solver: str, shared_data: Path) -> None:
    train, test = split(_ml100k(shared_data), "random", test_fraction=0.2, seed=0)
    popularity = popularity_metrics(train, test, ks=(20,))["recall@20"]
    model = fit_wals(train, WALSConfig(solver=solver, device="cpu"))
    recall = ranking_metrics(model.user_factors, model.item_factors, train, test, ks=(20,))["recall@20"]
    # Measured: popularity 0.165, WALS 0.329 (cg) and 0.327 (cholesky), about 2×.
    assert recall >= 1.5 * popularity, f"recall@20 {recall:.4f} vs popularity {popularity:.4f}"
