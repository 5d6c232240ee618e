"""Each row's L2 weight in WALS, the one formula training, fold-in and the data-driven default share.

"none": λ for every row; "frequency" (Rendle et al. 2022): λ_u = λ·(|I_u| + w0·n_other)^ν, so a row is
shrunk in proportion to the loss it carries (its observed entries plus w0 for every other column).
"""

from __future__ import annotations

import numpy as np


def row_l2(l2: float, counts: np.ndarray, unobserved: float, scaling: str, exponent: float) -> np.ndarray:
    """Each row's λ (float64) from its nonzero counts; `unobserved` is w0 times the number of columns."""
    if scaling == "frequency":
        return l2 * (np.asarray(counts).astype(np.float64) + unobserved) ** exponent
    return np.full(len(counts), l2, dtype=np.float64)
