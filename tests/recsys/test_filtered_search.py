"""Search within a filter: exactly k allowed items on both index kinds, exact answers when the filter is selective."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys.filtered_search import Allowed, cap_per_value, mmr, popular, search_allowed
from app.recsys.index import IndexConfig, build_index

N_ITEMS, DIM = 6000, 16


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(20, DIM))
    items = (centers[rng.integers(0, 20, N_ITEMS)] + 0.6 * rng.normal(size=(N_ITEMS, DIM))).astype(np.float32)
    queries = (centers[rng.integers(0, 20, 40)] + 0.6 * rng.normal(size=(40, DIM))).astype(np.float32)
    return items, queries


@pytest.fixture(scope="module", params=["exact", "hnsw"])
def index(request, data):
    items, queries = data
    config = IndexConfig(
        exact_max_items=N_ITEMS if request.param == "exact" else 0, ef_construction=200, recall_queries=50
    )
    return build_index(items, config, sample_queries=queries)


def _truth(items, q, k, mask, excluded):
    scores = items @ q
    scores[~mask] = -np.inf
    scores[list(excluded)] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return order[np.isfinite(scores[order])]


@pytest.mark.parametrize(("share", "exact_items"), [(0.5, 0), (0.05, 0), (0.05, 1000), (0.001, 0)])
def test_exactly_k_allowed_items_and_exact_when_selective(index, data, share, exact_items):
    items, queries = data
    rng = np.random.default_rng(int(share * 1000))
    mask = rng.random(N_ITEMS) < share
    allowed = Allowed(mask)
    k = 10
    # Each query excludes a few items, some of them allowed ones (as seen items would be).
    excluded = [rng.choice(np.flatnonzero(mask), size=min(3, allowed.count), replace=False) for _ in queries]
    ptr = np.concatenate([[0], np.cumsum([e.shape[0] for e in excluded])])
    answers = search_allowed(index, queries, k, allowed, ptr, np.concatenate(excluded).astype(np.int32), exact_items)
    recall = []
    for q, ex, (ids, scores) in zip(queries, excluded, answers, strict=True):
        truth = _truth(items, q, k, mask, set(ex.tolist()))
        assert ids.shape[0] == min(k, allowed.count - ex.shape[0])
        assert mask[ids].all() and not set(ids.tolist()) & set(ex.tolist())
        assert np.all(np.diff(scores) <= 1e-6)  # best first
        np.testing.assert_allclose(scores, items[ids] @ q, rtol=1e-5, atol=1e-5)
        recall.append(len(set(ids.tolist()) & set(truth.tolist())) / truth.shape[0])
        if index.kind == "exact" or share < 0.01 or allowed.count <= exact_items:
            assert ids.tolist() == truth.tolist()  # exact: the scan over allowed items
    assert np.mean(recall) >= 0.95
    # One query alone takes the same path as a batch.
    [(one, _)] = search_allowed(index, queries[:1], k, allowed, ptr[:2], excluded[0].astype(np.int32), exact_items)
    assert one.tolist() == answers[0][0].tolist()


def test_no_filter_is_the_index_itself_and_an_empty_filter_answers_nothing(index, data):
    items, queries = data
    plain = index.search(queries[:3], 5)
    same = search_allowed(index, queries[:3], 5, Allowed(np.ones(N_ITEMS, dtype=bool)))
    assert [a[0].tolist() for a in plain] == [b[0].tolist() for b in same]
    nothing = search_allowed(index, queries[:2], 5, Allowed(np.zeros(N_ITEMS, dtype=bool)))
    assert [ids.shape[0] for ids, _ in nothing] == [0, 0]


def test_popular_within_a_filter():
    counts = np.array([5, 9, 9, 1, 7])
    order = np.argsort(-counts, kind="stable")
    top, scores = popular(counts, order, 3, None)
    assert top.tolist() == [1, 2, 4] and scores.tolist() == [9, 9, 7]
    top, _ = popular(counts, order, 3, Allowed(np.array([True, False, True, True, False])))
    assert top.tolist() == [2, 0, 3]
    # Over several blocks of the order: the rare allowed items far down are still found, in order.
    counts = np.arange(5000, 0, -1)
    mask = np.zeros(5000, dtype=bool)
    mask[[4000, 4500, 10]] = True
    top, _ = popular(counts, np.arange(5000), 5, Allowed(mask))
    assert top.tolist() == [10, 4000, 4500]


def test_mmr_trades_relevance_for_spread_and_cap_limits_each_value():
    vectors = np.array([[1, 0], [0.99, 0.01], [0.98, 0.02], [0, 1]], dtype=np.float32)
    ids, scores = np.arange(4), np.array([4.0, 3.9, 3.8, 1.0])
    assert mmr(vectors, ids, scores, 2, 1.0)[0].tolist() == [0, 1]  # weight 1: relevance only
    assert mmr(vectors, ids, scores, 2, 0.3)[0].tolist() == [0, 3]  # the near-duplicates give way
    codes = np.array([0, 0, 1, -1])
    assert cap_per_value(codes, ids, scores, 3, 1)[0].tolist() == [0, 2, 3]
