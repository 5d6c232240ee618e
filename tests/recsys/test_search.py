"""Exact search: chunking by memory budget never changes an answer, exclusions always hold."""

from __future__ import annotations

import numpy as np

from app.recsys import search


def test_memory_bounded_chunks_give_the_same_answers_as_one_product(monkeypatch):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(50, 8)).astype(np.float32)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    indptr = np.arange(0, 51 * 3, 3, dtype=np.int64)
    indices = rng.integers(0, 300, size=150).astype(np.int32)
    whole = search.search(queries, items, 10, indptr, indices)
    monkeypatch.setattr(search, "CHUNK_FLOATS", 300 * 7)  # 7 queries per chunk
    chunked = search.search(queries, items, 10, indptr, indices)
    scores = queries @ items.T
    for r, ((a, sa), (b, sb)) in enumerate(zip(whole, chunked, strict=True)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa, sb, rtol=1e-6)  # BLAS blocking differs by an ulp
        assert not set(a.tolist()) & set(indices[indptr[r] : indptr[r + 1]].tolist())
        allowed = np.delete(scores[r], indices[indptr[r] : indptr[r + 1]])
        np.testing.assert_allclose(sa, np.sort(allowed)[::-1][:10], rtol=1e-5)
