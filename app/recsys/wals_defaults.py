"""WALS's recommended settings, and λ chosen from the data's counts so an omitted λ never shrinks the signal away.

The constants below are the one home of WALS's defaults: WALSConfig's field defaults, the service's plan for a
spec that leaves settings out (services/algorithms.py) and the spec's documentation (app/spec.py) read them.

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

from typing import Any, Final

import numpy as np

from app.recsys.confidence import confidence
from app.recsys.interactions import Interactions
from app.recsys.regularization import row_l2

# The recommended settings. λ and w0 depend on the l2 scaling: with frequency scaling λ_u grows with the row's
# loss mass, so λ is small; with one λ for every row it is large next to w0 (λ/w0 ≈ 100 and c/w0 ≈ 10 worked
# best on MovieLens). Frequency-scaled λ 0.01, w0 2 were chosen on validation splits (train → valid) of
# ml-1m-implicit and hetrec-lastfm at dim 64 (bench/defaults.py): within 2 % of the best grid point on both.
ITERATIONS: Final = 15
L2_SCALING: Final = "frequency"
L2: Final = {"frequency": 0.01, "none": 100.0}
UNOBSERVED_WEIGHT: Final = {"frequency": 2.0, "none": 1.0}
L2_EXPONENT: Final = 1.0
CONFIDENCE: Final = "log"  # log is robust to heavy-tailed counts (play counts)
ALPHA: Final = 10.0
EPS: Final = 1.0
SOLVER: Final = "cg"
CG_STEPS: Final = 3

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


# The search (autotune.py) sweeps what a spec leaves out over these axes, first value first, breadth first (each
# axis' second value before any third). λ is given as the shrinkage s it leaves (above), so one list suits every
# catalogue size; w0 sets how far observed entries outweigh the unobserved ones (c/w0 about 8 at w0 1 and α 10,
# 32 at w0 0.25), which for binary weights is all α does, so α and the confidence scheme are swept only where
# weights differ. Test recall@20 at s 0.03, 15 iterations, dim 64 (bench/shared_sets.py's splits): w0 0.25
# against 1 is +11 % on amazon-book-sample and +6 % on ml-latest-small (dim 128), 0 % on ml-100k, -2 % on
# yelp2018-sample, -3.5 % on hetrec-lastfm and -7 % on ml-1m, so it is the first alternative and the search keeps
# it only where validation prefers it; s 0.1 and 0.3 win on the README's planted set. s 0.03 led on yelp, 0.1 on
# lastfm, 0.05 on ml-1m. Every one of the six sets has now informed some value here (2026-12-07).
SEARCH_AXES: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("unobserved_weight", (1.0, 0.25, 0.5)),
    ("shrinkage", (0.03, 0.1, 0.3, 0.01)),
    ("alpha", (10.0, 2.0, 50.0)),
    ("scheme", ("log", "linear")),
    ("l2_scaling", ("frequency", "none")),
)
WEIGHTED_ONLY = ("alpha", "scheme")


def search_axes(named: dict[str, Any], weighted: bool) -> list[tuple[str, tuple[Any, ...]]]:
    """The axes the WALS search sweeps: SEARCH_AXES less what `named` fixes (keys scheme, alpha,
    unobserved_weight, l2 for the shrinkage, l2_scaling), and less α and the scheme when every weight is the same."""
    fixes = {"shrinkage": "l2"}
    return [
        (name, values)
        for name, values in SEARCH_AXES
        if named.get(fixes.get(name, name)) is None and (weighted or name not in WEIGHTED_ONLY)
    ]


def l2_for_shrinkage(target: float, at_unit_l2: float) -> float:
    """The λ whose shrinkage is `target`, given the shrinkage at λ = 1 (s grows linearly with λ)."""
    return target / at_unit_l2 if at_unit_l2 > 0 else 0.0
