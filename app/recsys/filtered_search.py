"""Search restricted to the items a filter allows, popularity within it, and re-ranking for diversity.

The contract is the index's own (app.recsys.index): per query, best-first item indices and true scores,
excluded items never returned, and exactly k items whenever the allowed items minus the exclusions hold k.

How a filter keeping a share s of the catalogue is searched:
  * an HNSW index over-fetches about (k + exclusions) / s candidates and keeps the allowed ones; rows
    still short double the fetch, up to the index's max_fetch;
  * whatever is left, an exact index, filters keeping at most EXACT_SCAN_ITEMS items, and filters so
    selective that the fetch would pass max_fetch are answered by an exact scan over the allowed items
    only (their vectors gathered once per filter when they are few, a masked scan of the whole catalogue
    otherwise). So a 0.1 % filter is exact, and costs a scan of 0.1 % of the items.

Pure: numpy only (the index's candidates may call faiss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from app.recsys.index import ItemIndex
from app.recsys.search import CHUNK_FLOATS, gather_exclusions, topk_rows

# Allowed sets up to this many items keep their own copy of their vectors (64 MiB at dim 256).
GATHER_MAX_ITEMS = 65_536
# Filters keeping at most this many items are scanned exactly even on an HNSW index: about where a scan of
# the gathered vectors (0.1 ms at dim 64) stops being cheaper than a graph search, and it is exact, where
# the deep candidates an over-fetch reads are the graph's least accurate. (15,000 items took 0.46 ms
# against 0.26 ms for the graph, bench/serving.py --filters at 30k items.)
EXACT_SCAN_ITEMS = 5_000
# An over-fetch aims at this many times the candidates it expects to need (filters are not uniform;
# a row still short doubles its fetch).
OVERFETCH_MARGIN = 1.25

Result = tuple[np.ndarray, np.ndarray]


@dataclass(eq=False)
class Allowed:
    """A compiled filter over a catalogue: the bitmap and what searches derive from it, built once."""

    mask: np.ndarray  # bool, one per item
    indices: np.ndarray = field(init=False)  # the allowed items, ascending
    _gathered: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.mask = np.ascontiguousarray(self.mask, dtype=bool)
        self.indices = np.flatnonzero(self.mask)

    @property
    def count(self) -> int:
        return int(self.indices.shape[0])

    @property
    def share(self) -> float:
        return self.count / max(1, int(self.mask.shape[0]))

    @property
    def nbytes(self) -> int:
        return int(self.mask.nbytes + self.indices.nbytes) + sum(v.nbytes for v in self._gathered.values())

    def vectors(self, index: ItemIndex) -> np.ndarray:
        """The allowed rows of the index's vectors (cached per index)."""
        key = id(index.vectors)
        if key not in self._gathered:
            self._gathered[key] = np.ascontiguousarray(index.vectors[self.indices])
        return self._gathered[key]


def _exclusions(n_queries: int, ptr: np.ndarray | None, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if ptr is None or idx is None:
        return np.zeros(n_queries + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.asarray(ptr, dtype=np.int64), np.asarray(idx)


def search_allowed(
    index: ItemIndex,
    queries: np.ndarray,
    k: int,
    allowed: Allowed | None,
    exclude_indptr: np.ndarray | None = None,
    exclude_indices: np.ndarray | None = None,
    exact_items: int = EXACT_SCAN_ITEMS,
) -> list[Result]:
    """index.search restricted to the allowed items (None or all: the index's own search); filters keeping
    at most `exact_items` items are answered by an exact scan on any index."""
    if allowed is None or allowed.count == index.n_items:
        return index.search(queries, k, exclude_indptr, exclude_indices)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = index._prepare(queries)
    ptr, idx = _exclusions(q.shape[0], exclude_indptr, exclude_indices)
    results: list[Result] = [(np.zeros(0, np.int64), np.zeros(0, np.float32))] * q.shape[0]
    if allowed.count == 0:
        return results
    pending = np.arange(q.shape[0])
    if index.kind != "exact" and allowed.count > exact_items:
        if q.shape[0] == 1:  # the API's single-user path, in few numpy calls
            one = _overfetch_one(index, q, k, allowed, idx[ptr[0] : ptr[1]])
            if one is not None:
                return [one]
        else:
            pending = _overfetch(index, q, k, allowed, ptr, idx, results)
    if pending.shape[0]:
        sub_ptr, sub_idx = gather_exclusions(pending, ptr, idx)
        for row, res in zip(pending, _exact_allowed(index, q[pending], k, allowed, sub_ptr, sub_idx), strict=True):
            results[row] = res
        index.fallback_count += int(pending.shape[0])
    return results


def _widths(x: np.ndarray) -> np.ndarray:
    """Fetch widths rounded up to a multiple of 32: a batch needs few candidate calls (one per width), and a
    single query's beam stays near what it needs (powers of two would nearly double it at worst)."""
    out: np.ndarray = (np.ceil(np.maximum(x, 1) / 32) * 32).astype(np.int64)
    return out


def _overfetch_one(index: ItemIndex, q: np.ndarray, k: int, allowed: Allowed, excluded: np.ndarray) -> Result | None:
    """_overfetch for one query; None when even the widest fetch comes up short."""
    cap = max(1, min(index.config.max_fetch, index.n_items))
    width = int(_widths(np.array([k / allowed.share * OVERFETCH_MARGIN + excluded.shape[0] + 8]))[0])
    while width <= cap:
        cand = index.candidates(q, width)[0].astype(np.int64)
        valid = (cand >= 0) & allowed.mask[np.maximum(cand, 0)]
        if excluded.shape[0]:
            # Broadcast compare: a few hundred candidates against a user's exclusions, no sorting.
            valid &= ~(cand[:, None] == excluded[None, :]).any(axis=1)
        picked = cand[valid][:k]
        if picked.shape[0] == k:
            scores = np.einsum("qd,qkd->qk", q, index.vectors[picked][None]).astype(np.float32)[0]
            order = np.argsort(-scores, kind="stable")
            return picked[order], scores[order]
        if width == cap:
            return None
        width = min(width * 2, cap)
    return None


def _overfetch(
    index: ItemIndex, q: np.ndarray, k: int, allowed: Allowed, ptr: np.ndarray, idx: np.ndarray, out: list[Result]
) -> np.ndarray:
    """Answer the rows that over-fetching fills (into `out`); return the rows left for the exact scan."""
    cap = max(1, min(index.config.max_fetch, index.n_items))
    # k allowed candidates need about k / share of them; an exclusion takes a slot only when it is allowed,
    # and then it is among the candidates anyway, so exclusions add one slot each, undivided.
    width_of = _widths(k / allowed.share * OVERFETCH_MARGIN + np.diff(ptr) + 8)
    left = [np.flatnonzero(width_of > cap)]
    pending = np.flatnonzero(width_of <= cap)
    while pending.shape[0]:
        width = int(width_of[pending].min())
        rows = pending[width_of[pending] == width]
        pending = np.setdiff1d(pending, rows)
        cand = index.candidates(q[rows], width).astype(np.int64)
        valid = (cand >= 0) & allowed.mask[np.maximum(cand, 0)]
        sub_ptr, sub_idx = gather_exclusions(rows, ptr, idx)
        if sub_idx.shape[0]:
            # Keys row·n_items + item match each candidate against its own row's exclusions in one isin.
            row_of = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(sub_ptr))
            valid &= ~np.isin(
                np.arange(rows.shape[0], dtype=np.int64)[:, None] * index.n_items + cand,
                row_of * index.n_items + sub_idx.astype(np.int64),
            )
        enough = valid.sum(axis=1) >= k
        done = rows[enough]
        if done.shape[0]:
            first = np.argsort(~valid[enough], axis=1, kind="stable")[:, :k]
            picked = np.take_along_axis(cand[enough], first, axis=1)
            # True scores in numpy, re-sorted, as the index does.
            scores = np.einsum("qd,qkd->qk", q[done], index.vectors[picked]).astype(np.float32)
            order = np.argsort(-scores, axis=1, kind="stable")
            picked = np.take_along_axis(picked, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            for j, row in enumerate(done):
                out[row] = (picked[j], scores[j])
        short = rows[~enough]
        if width >= cap:  # the widest fetch came up short: the exact scan answers these rows
            left.append(short)
        else:
            width_of[short] = min(width * 2, cap)
            pending = np.union1d(pending, short)
    return np.sort(np.concatenate(left))


def _exact_allowed(
    index: ItemIndex, q: np.ndarray, k: int, allowed: Allowed, ptr: np.ndarray, idx: np.ndarray
) -> list[Result]:
    """Exact top-k over the allowed items, chunked so a score matrix stays within CHUNK_FLOATS."""
    gathered = allowed.count <= GATHER_MAX_ITEMS
    vectors = allowed.vectors(index) if gathered else index.vectors
    blocked = None if gathered else np.flatnonzero(~allowed.mask)
    chunk = max(1, CHUNK_FLOATS // max(1, vectors.shape[0]))
    out: list[Result] = []
    for start in range(0, q.shape[0], chunk):
        stop = min(start + chunk, q.shape[0])
        part = q[start:stop]
        # One query: numpy's own loop, not a BLAS call that may wait for worker threads (see index.py).
        scores = np.einsum("md,nd->mn", part, vectors) if part.shape[0] == 1 else part @ vectors.T
        if blocked is not None:
            scores[:, blocked] = -np.inf
        lo, hi = ptr[start], ptr[stop]
        if hi > lo:
            rows = np.repeat(np.arange(stop - start), np.diff(ptr[start : stop + 1]))
            cols = idx[lo:hi].astype(np.int64)
            if gathered:
                at = np.minimum(np.searchsorted(allowed.indices, cols), allowed.count - 1)
                hit = allowed.indices[at] == cols
                rows, cols = rows[hit], at[hit]
            scores[rows, cols] = -np.inf
        top, top_scores = topk_rows(scores, k)
        for r in range(stop - start):
            keep = np.isfinite(top_scores[r])
            ids = top[r][keep]
            out.append((allowed.indices[ids] if gathered else ids, top_scores[r][keep].astype(np.float32)))
    return out


def popular(counts: np.ndarray, order: np.ndarray, k: int, allowed: Allowed | None) -> Result:
    """The k items with the most interactions within the filter, given `order` (items by count, best first);
    scores are the counts. Reads the order a block at a time, so a broad filter stops early."""
    if allowed is None:
        top = order[:k]
    else:
        found: list[np.ndarray] = []
        n_found, block = 0, max(1024, 4 * k)
        for start in range(0, order.shape[0], block):
            part = order[start : start + block]
            part = part[allowed.mask[part]]
            found.append(part)
            n_found += part.shape[0]
            if n_found >= k:
                break
        top = np.concatenate(found)[:k] if found else np.zeros(0, dtype=np.int64)
    return top, counts[top].astype(np.float32)


def segment_popularity(
    seen_indptr: np.ndarray, seen_indices: np.ndarray, users: np.ndarray, global_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, order) for `popular` among a segment: each item's number of the `users` (a mask over the
    model's users) who touched it, and the items by that count, ties (and items no user of the segment
    touched) in `global_order`."""
    n_items = global_order.shape[0]
    owner = np.repeat(users, np.diff(seen_indptr))  # per stored interaction: is its user in the segment
    counts = np.bincount(seen_indices[owner], minlength=n_items)
    rank = np.empty(n_items, dtype=np.int64)
    rank[global_order] = np.arange(n_items)
    return counts, np.lexsort((rank, -counts))


def mmr(vectors: np.ndarray, ids: np.ndarray, scores: np.ndarray, k: int, weight: float) -> Result:
    """Maximal marginal relevance: greedily the candidate maximising weight·relevance − (1−weight)·(its
    highest cosine with those already picked); relevance is the score rescaled to [0, 1] over the candidates."""
    if ids.shape[0] <= 1 or weight >= 1:
        return ids[:k], scores[:k]
    v = vectors[ids].astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    spread = float(scores.max() - scores.min())
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(ids.shape[0])
    closest = np.full(ids.shape[0], -math.inf)
    taken = np.zeros(ids.shape[0], dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, ids.shape[0])):
        redundancy = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(taken, -math.inf, weight * relevance - (1 - weight) * redundancy)
        j = int(np.argmax(value))
        picked.append(j)
        taken[j] = True
        closest = np.maximum(closest, v @ v[j])
    chosen = np.array(picked, dtype=np.int64)
    return ids[chosen], scores[chosen]


def cap_per_value(codes: np.ndarray, ids: np.ndarray, scores: np.ndarray, k: int, per_value: int) -> Result:
    """The best candidates, at most `per_value` sharing one value of a categorical column (codes per item,
    -1: no value, never capped), best first."""
    values = codes[ids]
    taken: dict[int, int] = {}
    keep: list[int] = []
    for j, value in enumerate(values.tolist()):
        if value >= 0:
            if taken.get(value, 0) >= per_value:
                continue
            taken[value] = taken.get(value, 0) + 1
        keep.append(j)
        if len(keep) == k:
            break
    chosen = np.array(keep, dtype=np.int64)
    return ids[chosen], scores[chosen]
