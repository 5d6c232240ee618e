"""Top-k ranking metrics under the LightGCN protocol (see ../shared/data/README.md).

For every user with test items: score all items, drop the user's training items, take the top k.
Recall@k = hits / |test items|;  NDCG@k = DCG / IDCG with DCG = Σ_hits 1/log2(rank + 2) (rank 0-based)
and IDCG over min(|test items|, k) hits; both are averaged over the users that have test items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from app.recsys.base import Evaluator
from app.recsys.interactions import Interactions

# Bound on the float32 score block of one chunk of users (chunk × n_items).
_CHUNK_BYTES = 64 * 2**20

ScoreFn = Callable[[np.ndarray], np.ndarray]  # user indices -> float scores (len(users), n_items)


def topk_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Return each row's top-k column indices, best first (ties inside the top k by lower index)."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d, got shape {scores.shape}")
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < scores.shape[1]:
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    top_scores = np.take_along_axis(scores, top, axis=1)
    # Sort by score descending, then by item index so ties are ordered deterministically.
    order = np.lexsort((top, -top_scores), axis=1)
    result: np.ndarray = np.take_along_axis(top, order, axis=1).astype(np.int64)
    return result


def _validate(train: Interactions, test: Interactions, ks: Sequence[int]) -> list[int]:
    if (train.n_users, train.n_items) != (test.n_users, test.n_items):
        raise ValueError(
            f"train and test must have the same shape, got {train.n_users}×{train.n_items} "
            f"and {test.n_users}×{test.n_items}"
        )
    ks = list(ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks}")
    return ks


def _test_users(test: Interactions, max_users: int | None, seed: int) -> np.ndarray:
    users = np.flatnonzero(test.user_counts() > 0)
    if max_users is not None:
        if max_users < 1:
            raise ValueError(f"max_users must be >= 1 or None, got {max_users}")
        if max_users < users.shape[0]:
            users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    return users


def _coordinates(matrix: Interactions, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (row-in-chunk, item) coordinates of the given users' nonzeros."""
    block = matrix.select_rows(users)
    return block.row_users(), block.indices.astype(np.int64)


def _evaluate(
    score: ScoreFn,
    train: Interactions,
    test: Interactions,
    ks: Sequence[int],
    max_users: int | None,
    seed: int,
) -> dict[str, float]:
    ks = _validate(train, test, ks)
    users = _test_users(test, max_users, seed)
    n_items = train.n_items
    k_max = min(max(ks), n_items)
    discounts = 1.0 / np.log2(np.arange(2, k_max + 2, dtype=np.float64))
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[j] = IDCG with j hits
    sums = {f"{name}@{k}": 0.0 for k in ks for name in ("recall", "ndcg")}
    if users.shape[0] == 0 or n_items == 0:
        return {key: 0.0 for key in sums}
    chunk = max(1, _CHUNK_BYTES // (4 * n_items))
    for start in range(0, users.shape[0], chunk):
        batch = users[start : start + chunk]
        scores = np.array(score(batch))  # a writable copy: seen items are masked in place
        seen_rows, seen_items = _coordinates(train, batch)
        scores[seen_rows, seen_items] = -np.inf
        top = topk_from_scores(scores, k_max)
        relevant = np.zeros((batch.shape[0], n_items), dtype=bool)
        test_rows, test_items = _coordinates(test, batch)
        relevant[test_rows, test_items] = True
        # A dropped training item is never a hit, even where it fills a slot of a short ranking.
        hits = np.take_along_axis(relevant, top, axis=1) & np.isfinite(np.take_along_axis(scores, top, axis=1))
        n_relevant = test.user_counts()[batch].astype(np.float64)
        for k in ks:
            k_eff = min(k, k_max)
            hit_k = hits[:, :k_eff]
            sums[f"recall@{k}"] += float((hit_k.sum(1) / n_relevant).sum())
            dcg = (hit_k * discounts[:k_eff]).sum(1)
            idcg = ideal[np.minimum(n_relevant.astype(np.int64), k_eff)]
            sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
    return {key: value / users.shape[0] for key, value in sums.items()}


def ranking_metrics(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: Interactions,
    test: Interactions,
    ks: Sequence[int] = (10, 20),
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Return {"recall@k", "ndcg@k"} of dot-product scores; max_users samples that many test users."""
    if user_factors.shape[0] != train.n_users or item_factors.shape[0] != train.n_items:
        raise ValueError(
            f"factors must have {train.n_users} user rows and {train.n_items} item rows, "
            f"got {user_factors.shape[0]} and {item_factors.shape[0]}"
        )
    item_t = np.ascontiguousarray(item_factors.T, dtype=np.float32)
    user_f = np.asarray(user_factors, dtype=np.float32)

    def score(users: np.ndarray) -> np.ndarray:
        result: np.ndarray = user_f[users] @ item_t
        return result

    return _evaluate(score, train, test, ks, max_users, seed)


def popularity_metrics(train: Interactions, test: Interactions, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """Return the same metrics for the baseline that ranks items by their training count."""
    # Counts are integers, so subtracting index / n_items (< 1) breaks ties by lower item index exactly.
    popularity = train.item_counts() - np.arange(train.n_items) / max(train.n_items, 1)

    def score(users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(popularity, (users.shape[0], train.n_items))

    return _evaluate(score, train, test, ks, None, 0)


def make_evaluator(
    train: Interactions,
    test: Interactions,
    ks: Sequence[int] = (10, 20),
    max_users: int | None = None,
    seed: int = 0,
) -> Evaluator:
    """Return an Evaluator computing ranking_metrics on (train, test) for given factors."""
    _validate(train, test, ks)

    def evaluate(user_factors: np.ndarray, item_factors: np.ndarray) -> dict[str, float]:
        return ranking_metrics(user_factors, item_factors, train, test, ks, max_users, seed)

    return evaluate
