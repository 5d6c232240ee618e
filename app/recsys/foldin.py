"""Fold-in: the factor of a user the model never saw, solved in closed form (numpy only).

For interactions (i, r_i) and fixed item factors V it is the WALS row solve
    (w0·VᵀV + Σ_i (c_i − w0) v_i v_iᵀ + λI) u = Σ_i c_i v_i,
the same half-step WALS would take for that user, so a folded-in user is scored like a trained one.
"""

from __future__ import annotations

import numpy as np


def fold_in(
    item_factors: np.ndarray,
    YtY: np.ndarray,
    items: np.ndarray,
    confidence: np.ndarray,
    unobserved_weight: float,
    l2: float,
) -> np.ndarray:
    """The user vector minimising the WALS objective for these items with V fixed."""
    V = item_factors[items].astype(np.float64)
    Cu = np.asarray(confidence, dtype=np.float64)
    w0 = unobserved_weight
    A = w0 * YtY + (V.T * (Cu - w0)) @ V + l2 * np.eye(V.shape[1])
    b = V.T @ Cu
    return np.linalg.solve(A, b).astype(np.float32)
