"""Fold-in: the factor of a user the model never saw, solved in closed form (numpy only).

For interactions (i, r_i) and fixed item factors V it is the WALS row solve
    (w0·VᵀV + Σ_i (c_i − w0) v_i v_iᵀ + λ_u I) u = Σ_i c_i v_i,
the same half-step WALS would take for that user, so a folded-in user is scored like a trained one
(λ_u = λ, or λ·(|I_u| + w0·n_items)^ν with frequency-scaled L2).
"""

from __future__ import annotations

import numpy as np

from app.recsys.regularization import row_l2


def fold_in(
    item_factors: np.ndarray,
    YtY: np.ndarray,
    items: np.ndarray,
    confidence: np.ndarray,
    unobserved_weight: float,
    l2: float,
    l2_scaling: str = "none",
    l2_exponent: float = 1.0,
) -> np.ndarray:
    """The user vector minimising the WALS objective for these (distinct) items with V fixed."""
    V = item_factors[items].astype(np.float64)
    Cu = np.asarray(confidence, dtype=np.float64)
    w0 = unobserved_weight
    l2 = float(row_l2(l2, np.array([len(items)]), w0 * item_factors.shape[0], l2_scaling, l2_exponent)[0])
    A = w0 * YtY + (V.T * (Cu - w0)) @ V + l2 * np.eye(V.shape[1])
    b = V.T @ Cu
    return np.linalg.solve(A, b).astype(np.float32)
