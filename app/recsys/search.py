"""Exact nearest-neighbour search over item factors with exclusions (numpy/BLAS only).

Scores are inner products q·v. Excluded items (a user's seen items, the query item itself)
are masked to -inf before the top-k, so an answer holds k items whenever the catalog allows.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 1024
# Score matrices stay within this many floats (128 MiB), so a million-item catalog is scored in
# chunks of 32 queries rather than 1024 (4 GiB).
CHUNK_FLOATS = 1 << 25


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first top-k of each row of a 2-D score matrix, dropping masked (-inf) entries later."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def search(
    queries: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    exclude_indptr: np.ndarray | None = None,
    exclude_indices: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-k items for each query vector; row r excludes exclude_indices[indptr[r]:indptr[r+1]].

    Work is one matrix product per chunk of queries, never a Python loop per query.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    results: list[tuple[np.ndarray, np.ndarray]] = []
    chunk = max(1, min(CHUNK_ROWS, CHUNK_FLOATS // max(1, item_factors.shape[0])))
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        scores = queries[start:stop] @ item_factors.T
        if exclude_indptr is not None and exclude_indices is not None:
            lo, hi = exclude_indptr[start], exclude_indptr[stop]
            rows = np.repeat(np.arange(stop - start), np.diff(exclude_indptr[start : stop + 1]))
            scores[rows, exclude_indices[lo:hi]] = -np.inf
        idx, top = topk_rows(scores, k)
        for r in range(stop - start):
            keep = np.isfinite(top[r])
            results.append((idx[r][keep], top[r][keep]))
    return results


def gather_exclusions(rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sub-CSR of the given rows (e.g. the seen items of a batch of users)."""
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    sub_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if len(rows) == 0 or sub_indptr[-1] == 0:
        return sub_indptr, np.empty(0, dtype=np.int32)
    offsets = np.repeat(starts - sub_indptr[:-1], lengths)
    return sub_indptr, indices[np.arange(sub_indptr[-1]) + offsets]
