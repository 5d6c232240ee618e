"""Folding diagnostics: do a model's recommendations cross between groups that never co-occur?

Folding (Xin et al., "Folding: Why Good Models Sometimes Make Spurious Recommendations", RecSys 2023):
trained on positives only, the embeddings of unrelated groups of users and items land close together and
one group's items are served to the other; negatives (sampled negatives, WALS's unobserved weight w0)
keep them apart. These numbers measure it next to recall/NDCG.

Notation: X is the binary users × items train matrix, I_u the training items of user u, s_ui = u·v_i the
dot-product score, and R_u the top-k items by s_ui among the items ∉ I_u (fewer than k when fewer are
unseen; ties by lower item index, as in metrics.py). Every diagnostic averages over one seeded sample of at
most max_users users with |I_u| ≥ 1 (`users` = its size), skipping users with R_u = ∅:

    leakage@k     = mean_u |{i ∈ R_u : g_i ≥ 0, g_i ∉ G_u}| / |R_u|
        g_i is item i's group; g_i = −1 (unknown, noise) is never leaked but still counts in |R_u|.
        G_u = {g_j : j ∈ I_u, g_j ≥ 0}, the groups the user touched in train; when user groups h are
        given (cross_group_leakage's user_groups) and h_u ≥ 0, G_u = {h_u} instead, so that a noise
        interaction does not excuse a leak. Users with G_u = ∅ are skipped.

    unreachable@k = mean_u |{i ∈ R_u : (X Xᵀ X)_ui = 0}| / |R_u|
        the share of recommendations that no user sharing an item with u ever consumed, i.e. not
        reachable in two hops u → j → w → i of the train graph. It needs no labels; on cleanly separated
        communities it equals leakage@k. Items without training interactions are never reachable, and a
        single shared user makes two groups reachable, so it sees folding only between groups that no
        user bridges. Computed per chunk S of users as (X_S Xᵀ) X_C, only at the recommended columns C.

    positive_auc  = mean_u [ P(s_up > s_un) + ½ P(s_up = s_un) ]
        p uniform over u's test items (its train items when no test set is given), n uniform over the
        items u never interacted with (in neither train nor test); estimated from 100 (p, n) pairs per
        user and averaged over the users that have both. 0.5 is chance: a folded model scores the other
        groups' items like its positives.

    score_gap     = mean_u (mean_p s_up − mean_n s_un) / std_n s_un
        over the same pairs (users whose sampled negatives all score alike are skipped): how many standard
        deviations of the random-item scores separate positives from them; unlike the AUC it does not
        saturate at 1.

With no users to average over, a value is its "nothing learnt" level: 0 for shares and gaps, 0.5 for AUC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from app.recsys.interactions import Interactions
from app.recsys.metrics import topk_from_scores

# Bound on the temporaries of one chunk of users: float32 scores (chunk × n_items) and the sparse
# co-user and reach blocks of unreachable@k (chunk × n_users, chunk × candidate items).
_CHUNK_BYTES = 64 * 2**20
# (positive, random unobserved item) pairs sampled per user for positive_auc and score_gap.
_PAIRS = 100
# Resampling rounds for negatives that hit one of the user's items; what is still a hit is dropped.
_NEGATIVE_ROUNDS = 8


@dataclass(frozen=True, eq=False)
class _Chunk:
    """One chunk of sampled users with their raw scores, train coordinates and top-k."""

    users: np.ndarray  # int64 user ids
    scores: np.ndarray  # float32 (len(users), n_items), seen items not masked
    train_rows: np.ndarray  # row in chunk of every train nonzero of these users
    train_items: np.ndarray  # its item
    top: np.ndarray  # int64 (len(users), k') top-k' unseen items, best first
    valid: np.ndarray  # bool, False where a slot holds a seen item (fewer than k unseen)


def _check(user_factors: np.ndarray, item_factors: np.ndarray, train: Interactions, k: int) -> None:
    if user_factors.ndim != 2 or item_factors.ndim != 2 or user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(
            f"factors must be 2-d with a shared dimension, got {user_factors.shape} and {item_factors.shape}"
        )
    if user_factors.shape[0] != train.n_users or item_factors.shape[0] != train.n_items:
        raise ValueError(
            f"factors must have {train.n_users} user rows and {train.n_items} item rows, "
            f"got {user_factors.shape[0]} and {item_factors.shape[0]}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _groups(name: str, groups: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(groups)
    if array.shape != (size,) or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be an integer array of shape ({size},), got {array.dtype} {array.shape}")
    if array.size and array.min() < -1:
        raise ValueError(f"{name} must be >= -1 (-1 = unknown group), got {array.min()}")
    return array.astype(np.int64)


def _sample_users(train: Interactions, max_users: int | None, rng: np.random.Generator) -> np.ndarray:
    users = np.flatnonzero(train.user_counts() > 0)
    if max_users is not None:
        if max_users < 1:
            raise ValueError(f"max_users must be >= 1 or None, got {max_users}")
        if max_users < users.shape[0]:
            users = np.sort(rng.choice(users, size=max_users, replace=False))
    return users


def _member(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return whether each query occurs in the sorted array sorted_keys."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(queries.shape, dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, queries), sorted_keys.shape[0] - 1)
    found: np.ndarray = sorted_keys[position] == queries
    return found


def _chunks(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: Interactions,
    users: np.ndarray,
    k: int,
    width: int,
) -> Iterator[_Chunk]:
    """Yield the sampled users in chunks whose temporaries stay near _CHUNK_BYTES (width: widest row)."""
    item_t = np.ascontiguousarray(item_factors.T, dtype=np.float32)
    user_f = np.asarray(user_factors, dtype=np.float32)
    chunk = max(1, _CHUNK_BYTES // (8 * max(width, 1)))
    for start in range(0, users.shape[0], chunk):
        batch = users[start : start + chunk]
        scores = user_f[batch] @ item_t
        block = train.select_rows(batch)
        rows, items = block.row_users(), block.indices.astype(np.int64)
        masked = scores.copy()
        masked[rows, items] = -np.inf
        top = topk_from_scores(masked, k)
        valid = np.isfinite(np.take_along_axis(masked, top, axis=1))
        yield _Chunk(batch, scores, rows, items, top, valid)


def _leakage(chunk: _Chunk, user_groups: np.ndarray | None, item_groups: np.ndarray) -> np.ndarray:
    """Return each user's leaked share of R_u, NaN where the user is skipped (G_u = ∅ or R_u = ∅)."""
    n_rows = chunk.users.shape[0]
    top_group = (
        item_groups.max(initial=-1)
        if user_groups is None
        else max(item_groups.max(initial=-1), user_groups.max(initial=-1))
    )
    n_groups = int(top_group) + 1
    touched_rows = chunk.train_rows
    touched = item_groups[chunk.train_items]
    if user_groups is not None:
        # A known user group replaces the touched groups: noise in train must not excuse a leak.
        own = user_groups[chunk.users]
        labelled = own >= 0
        from_items = ~labelled[touched_rows]
        touched_rows = np.concatenate([touched_rows[from_items], np.flatnonzero(labelled)])
        touched = np.concatenate([touched[from_items], own[labelled]])
    known = touched >= 0
    own_keys = np.unique(touched_rows[known] * n_groups + touched[known])
    has_groups = np.bincount(touched_rows[known], minlength=n_rows) > 0
    rec_groups = item_groups[chunk.top]
    rec_keys = np.arange(n_rows)[:, None] * n_groups + rec_groups
    leaked = chunk.valid & (rec_groups >= 0) & ~_member(own_keys, rec_keys)
    return _shares(leaked, chunk.valid, has_groups)


def _shares(flagged: np.ndarray, valid: np.ndarray, include: np.ndarray) -> np.ndarray:
    """Return flagged / valid slots per row, NaN for rows not included or without a valid slot."""
    n_valid = valid.sum(1)
    keep = include & (n_valid > 0)
    share = np.full(valid.shape[0], np.nan)
    share[keep] = flagged[keep].sum(1) / n_valid[keep]
    return share


def _unreachable(chunk: _Chunk, X: sp.csr_matrix, XT: sp.csr_matrix, X_csc: sp.csc_matrix) -> np.ndarray:
    """Return each user's share of R_u outside the two-hop reach of its history, NaN where R_u = ∅."""
    # Users who share an item with u (u itself included; it only reaches u's own, already excluded, items).
    co_users = X[chunk.users] @ XT
    # Reach is needed only at the recommended items, so only their columns of X enter the second product.
    candidates = np.unique(chunk.top[chunk.valid])
    reach = (co_users @ X_csc[:, candidates]).toarray()
    column = np.searchsorted(candidates, chunk.top)
    column = np.minimum(column, max(candidates.shape[0] - 1, 0))
    reached = np.take_along_axis(reach, column, axis=1) if candidates.shape[0] else np.zeros_like(chunk.valid)
    return _shares(chunk.valid & ~reached, chunk.valid, np.ones(chunk.users.shape[0], dtype=bool))


def _separation(
    chunk: _Chunk, positives: Interactions | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-user sampled AUC and score gap (NaN where undefined) from _PAIRS pairs per user."""
    n_rows, n_items = chunk.scores.shape
    train_keys = chunk.train_rows * n_items + chunk.train_items
    if positives is None:
        pos_indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(chunk.train_rows, minlength=n_rows), out=pos_indptr[1:])
        pos_items = chunk.train_items
        seen_keys = train_keys
    else:
        block = positives.select_rows(chunk.users)
        pos_indptr, pos_items = block.indptr, block.indices.astype(np.int64)
        seen_keys = np.union1d(train_keys, block.row_users() * n_items + pos_items)
    counts = np.diff(pos_indptr)
    if pos_items.shape[0] == 0:
        return np.full(n_rows, np.nan), np.full(n_rows, np.nan)
    # One uniform positive per pair: the row's start plus ⌊U · count⌋.
    offset = np.floor(rng.random((n_rows, _PAIRS)) * counts[:, None]).astype(np.int64)
    has_pos = counts > 0
    pos = pos_items[np.minimum(pos_indptr[:-1, None] + offset, pos_items.shape[0] - 1)]
    rows = np.arange(n_rows)[:, None]
    neg = rng.integers(0, n_items, size=(n_rows, _PAIRS))
    hit = _member(seen_keys, rows * n_items + neg)
    for _ in range(_NEGATIVE_ROUNDS):
        if not hit.any():
            break
        neg[hit] = rng.integers(0, n_items, size=int(hit.sum()))
        hit = _member(seen_keys, rows * n_items + neg)
    usable = ~hit & has_pos[:, None]
    s_pos = np.take_along_axis(chunk.scores, pos, axis=1).astype(np.float64)
    s_neg = np.take_along_axis(chunk.scores, neg, axis=1).astype(np.float64)
    n_usable = usable.sum(1)
    ok = n_usable > 0
    auc = np.full(n_rows, np.nan)
    wins = ((s_pos > s_neg) + 0.5 * (s_pos == s_neg)) * usable
    auc[ok] = wins[ok].sum(1) / n_usable[ok]
    gap = np.full(n_rows, np.nan)
    denominator = np.maximum(n_usable, 1)
    mean_pos = (s_pos * usable).sum(1) / denominator
    mean_neg = (s_neg * usable).sum(1) / denominator
    std_neg = np.sqrt(((s_neg - mean_neg[:, None]) ** 2 * usable).sum(1) / denominator)
    spread = ok & (std_neg > 0)
    gap[spread] = (mean_pos[spread] - mean_neg[spread]) / std_neg[spread]
    return auc, gap


def _mean(values: list[np.ndarray], empty: float) -> float:
    joined = np.concatenate(values) if values else np.zeros(0)
    joined = joined[~np.isnan(joined)]
    return float(joined.mean()) if joined.shape[0] else empty


def cross_group_leakage(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: Interactions,
    user_groups: np.ndarray | None,
    item_groups: np.ndarray,
    k: int = 10,
    max_users: int | None = 2000,
    seed: int = 0,
) -> float:
    """Return leakage@k: the mean share of top-k unseen items from groups not the user's own (see module)."""
    _check(user_factors, item_factors, train, k)
    items = _groups("item_groups", item_groups, train.n_items)
    users_g = None if user_groups is None else _groups("user_groups", user_groups, train.n_users)
    users = _sample_users(train, max_users, np.random.default_rng(seed))
    chunks = _chunks(user_factors, item_factors, train, users, k, train.n_items)
    return _mean([_leakage(chunk, users_g, items) for chunk in chunks], 0.0)


def folding_diagnostics(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: Interactions,
    test: Interactions | None = None,
    item_groups: np.ndarray | None = None,
    k: int = 10,
    max_users: int | None = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Return unreachable@k, positive_auc, score_gap and users, plus leakage@k when item_groups is given."""
    _check(user_factors, item_factors, train, k)
    if test is not None and (test.n_users, test.n_items) != (train.n_users, train.n_items):
        raise ValueError(
            f"train and test must have the same shape, got {train.n_users}×{train.n_items} "
            f"and {test.n_users}×{test.n_items}"
        )
    items = None if item_groups is None else _groups("item_groups", item_groups, train.n_items)
    rng = np.random.default_rng(seed)
    users = _sample_users(train, max_users, rng)
    X = sp.csr_matrix(
        (np.ones(train.nnz, dtype=bool), train.indices, train.indptr), shape=(train.n_users, train.n_items)
    )
    XT, X_csc = X.T.tocsr(), X.tocsc()
    leakage: list[np.ndarray] = []
    unreachable: list[np.ndarray] = []
    aucs: list[np.ndarray] = []
    gaps: list[np.ndarray] = []
    width = max(train.n_items, train.n_users)
    for chunk in _chunks(user_factors, item_factors, train, users, k, width):
        if items is not None:
            leakage.append(_leakage(chunk, None, items))
        unreachable.append(_unreachable(chunk, X, XT, X_csc))
        auc, gap = _separation(chunk, test, rng)
        aucs.append(auc)
        gaps.append(gap)
    result: dict[str, float] = {}
    if items is not None:
        result[f"leakage@{k}"] = _mean(leakage, 0.0)
    result[f"unreachable@{k}"] = _mean(unreachable, 0.0)
    result["positive_auc"] = _mean(aucs, 0.5)
    result["score_gap"] = _mean(gaps, 0.0)
    result["users"] = float(users.shape[0])
    return result
