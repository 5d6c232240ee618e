"""Ranking metrics: hand-computed recall/NDCG with seen items excluded, and the popularity baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.recsys.interactions import Interactions
from app.recsys.metrics import make_evaluator, popularity_metrics, ranking_metrics, topk_from_scores

N_ITEMS = 5


def _matrix(pairs: list[tuple[int, int]], n_users: int = 3) -> Interactions:
    users, items = zip(*pairs, strict=True) if pairs else ((), ())
    return Interactions.from_coo(np.array(users, np.int64), np.array(items, np.int64), n_users=n_users, n_items=N_ITEMS)


# Item scores fall with the index for user 0 and rise with it for user 1 (1-d factors).
ITEMS = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32)
USERS = np.array([[1.0], [-1.0], [1.0]], np.float32)
# User 0 saw item 0 (dropped), so its ranking is 1, 2, 3, 4; its test items are 2 and 4.
# User 1 ranks 4, 3, 2, 1, 0; its test item is 3. User 2 has no test items and is not averaged.
TRAIN = _matrix([(0, 0), (2, 1)])
TEST = _matrix([(0, 2), (0, 4), (1, 3)])


def test_hand_computed_recall_and_ndcg() -> None:
    got = ranking_metrics(USERS, ITEMS, TRAIN, TEST, ks=(1, 2, 4))
    d = [1.0 / math.log2(rank + 2) for rank in range(4)]  # discount of 0-based rank
    # k=1: user 0 top [1] no hit; user 1 top [4] no hit.
    assert got["recall@1"] == pytest.approx(0.0)
    assert got["ndcg@1"] == pytest.approx(0.0)
    # k=2: user 0 [1, 2] → hit at rank 1; user 1 [4, 3] → hit at rank 1.
    assert got["recall@2"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert got["ndcg@2"] == pytest.approx((d[1] / (d[0] + d[1]) + d[1] / d[0]) / 2)
    # k=4: user 0 [1, 2, 3, 4] → hits at ranks 1 and 3; user 1 [4, 3, 2, 1] → hit at rank 1.
    assert got["recall@4"] == pytest.approx(1.0)
    assert got["ndcg@4"] == pytest.approx(((d[1] + d[3]) / (d[0] + d[1]) + d[1] / d[0]) / 2)


def test_seen_items_are_never_recommended() -> None:
    # User 0's test item 0 is also in train: it is dropped, so it can never be a hit.
    train = _matrix([(0, 0)], n_users=1)
    test = _matrix([(0, 0)], n_users=1)
    got = ranking_metrics(USERS[:1], ITEMS, train, test, ks=(5,))
    assert got == {"recall@5": 0.0, "ndcg@5": 0.0}


def test_max_users_samples_test_users() -> None:
    full = ranking_metrics(USERS, ITEMS, TRAIN, TEST, ks=(2,))
    assert ranking_metrics(USERS, ITEMS, TRAIN, TEST, ks=(2,), max_users=10) == full
    one = ranking_metrics(USERS, ITEMS, TRAIN, TEST, ks=(2,), max_users=1, seed=3)
    assert one["recall@2"] in (pytest.approx(0.5), pytest.approx(1.0))


def test_evaluator_closure_matches_function() -> None:
    evaluate = make_evaluator(TRAIN, TEST, ks=(2, 4))
    assert evaluate(USERS, ITEMS) == ranking_metrics(USERS, ITEMS, TRAIN, TEST, ks=(2, 4))


def test_popularity_baseline() -> None:
    # Training counts: item 3 ×3, item 1 ×2, item 4 ×1, items 0 and 2 ×0 (tie: lower index first).
    train = _matrix([(0, 3), (1, 3), (2, 3), (1, 1), (2, 1), (2, 4)])
    test = _matrix([(0, 1), (0, 2), (1, 0)])
    got = popularity_metrics(train, test, ks=(2,))
    # User 0 (seen 3): ranking 1, 4, 0, 2 → top-2 hit at rank 0 of 2 test items.
    # User 1 (seen 3, 1): ranking 4, 0, 2 → top-2 hit item 0 at rank 1 of 1 test item.
    d = [1.0 / math.log2(rank + 2) for rank in range(2)]
    assert got["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["ndcg@2"] == pytest.approx((d[0] / (d[0] + d[1]) + d[1] / d[0]) / 2)


def test_topk_from_scores_orders_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(topk_from_scores(scores, 3), [[1, 3, 2], [0, 1, 2]])
    np.testing.assert_array_equal(topk_from_scores(scores, 10), [[1, 3, 2, 0], [0, 1, 2, 3]])


def test_metrics_validate_inputs() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ranking_metrics(USERS, ITEMS, TRAIN, _matrix([(0, 1)], n_users=4))
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(USERS, ITEMS, TRAIN, TEST, ks=(0,))
    with pytest.raises(ValueError, match="factors"):
        ranking_metrics(USERS[:2], ITEMS, TRAIN, TEST)
