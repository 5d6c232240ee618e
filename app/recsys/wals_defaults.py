"""WALS's λ chosen from the data's counts, so an omitted λ never shrinks the signal away.

Why a shrinkage and not a fixed λ: take a block of U users × I items that all interact with
confidence c (a community), everything else weighted w0. Its rank-1 WALS fixed point predicts

    p = 1 − √(λ_u·λ_i) / √(C_u·C_i),     C_u = Σ_i c_ui (the row's confidence mass), C_i likewise,

so s = √(λ_u·λ_i / (C_u·C_i)) is the fraction of the signal the regulariser takes away. With
frequency scaling λ_u = λ·(|I_u| + w0·n_items)^ν grows with the catalogue while C_u does not, so one λ
gives wildly different s on different data: λ 0.01, w0 2 leaves s ≈ 0.05 on ml-1m-implicit and 0.08 on
hetrec-lastfm (both near their best validation recall), but 2.6 on a 200k-user × 50k-item planted set,
where every factor shrank to nothing (recall@20 0.010). We measure s as the median over observed
(u, i) pairs, which weights rows and items by the interactions they carry, and lower λ until it is at most
TARGET_SHRINKAGE; s is proportional to λ, so this is one division.
"""

from __future__ import annotations

import numpy as np

from app.recsys.confidence import confidence
from app.recsys.interactions import Interactions
from app.recsys.regularization import row_l2

# Validation recall@20 at dim 64 (train → valid): ml-1m-implicit is best near s = 0.05 and hetrec-lastfm
# near 0.08–0.16, where the cap is inert and λ stays 0.01; on the planted 10M set recall is flat (0.3128–
# 0.3133) for s from 0.08 to 0.26 and collapses at 2.6 (bench/defaults.py). The cap only lowers λ: small
# sets that would like a larger s (ML-100K: about 0.1) keep λ 0.01.
TARGET_SHRINKAGE = 0.25
SAMPLE_PAIRS = 1_000_000


def _column_sums(
    data: Interactions, kind: str, alpha: float, eps: float, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C_u, C_i and |U_i|, over slices of the nonzeros: no nnz-sized temporary (a worker's memory peak)."""
    mass_u = np.zeros(data.n_users)
    mass_i = np.zeros(data.n_items)
    count_i = np.zeros(data.n_items, dtype=np.int64)
    for lo in range(0, data.nnz, chunk):
        hi = min(lo + chunk, data.nnz)
        c = confidence(data.weights[lo:hi], kind, alpha, eps)
        rows = np.searchsorted(data.indptr, np.arange(lo, hi), side="right") - 1
        mass_u += np.bincount(rows, c, data.n_users)
        mass_i += np.bincount(data.indices[lo:hi], c, data.n_items)
        count_i += np.bincount(data.indices[lo:hi], minlength=data.n_items)
    return mass_u, mass_i, count_i


def interaction_shrinkage(
    data: Interactions,
    l2: float,
    unobserved_weight: float,
    scaling: str,
    exponent: float,
    kind: str,
    alpha: float,
    eps: float,
    seed: int = 0,
) -> float:
    """The median s = √(λ_u·λ_i / (C_u·C_i)) over observed pairs (a sample of them on big data)."""
    if data.nnz == 0:
        raise ValueError("cannot choose λ from a dataset with no interactions")
    mass_u, mass_i, count_i = _column_sums(data, kind, alpha, eps, SAMPLE_PAIRS)
    l2_u = row_l2(l2, np.diff(data.indptr), unobserved_weight * data.n_items, scaling, exponent)
    l2_i = row_l2(l2, count_i, unobserved_weight * data.n_users, scaling, exponent)
    pairs = np.arange(data.nnz)
    if data.nnz > SAMPLE_PAIRS:
        # With replacement: without it numpy may permute all nnz positions to draw the sample.
        pairs = np.sort(np.random.default_rng(seed).integers(0, data.nnz, SAMPLE_PAIRS))
    u = np.searchsorted(data.indptr, pairs, side="right") - 1
    i = data.indices[pairs]
    return float(np.median(np.sqrt(l2_u[u] * l2_i[i] / (mass_u[u] * mass_i[i]))))


def capped_l2(base: float, shrinkage: float, target: float = TARGET_SHRINKAGE) -> float:
    """The largest λ ≤ base whose shrinkage is at most target (s grows linearly with λ)."""
    if shrinkage <= target:
        return base
    return base * target / shrinkage
