"""Nearest-neighbour index over item factors: exact (numpy) for small catalogs, faiss HNSW above a size.

Both kinds share the contract of app.recsys.search.search: per query, best-first item indices and their
true scores, excluded items never returned, and exactly k items whenever the catalog minus the exclusions
holds k. Answers come from one over-fetching candidate call per bucket of similar exclusion counts, filtered in
numpy; rows that still come up short (or whose exclusions make over-fetching too costly) are answered by
a full numpy scan, and every returned score is recomputed in numpy so it is the true q·v.

Both kinds find candidates with faiss (exact: faiss.knn, a blocked product with a heap per query), and
fall back to a full numpy scan. faiss is the one dependency outside numpy/scipy/torch allowed in
app.recsys; it is imported lazily inside the functions that need it, so importing this module never loads it.

On disk (next to model.npz/model.json, never pickle):
  index.json   {"format_version", "kind", "metric", "n_items", "dim", "config", measured stats, checksum}
  index.faiss  faiss.write_index of the HNSW graph and vectors (HNSW only; the exact index saves no arrays,
               since its factors live in the model)
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.recsys.search import gather_exclusions, topk_rows
from app.recsys.search import search as exact_search

FORMAT_VERSION = 1
INDEX_META = "index.json"
INDEX_FILE = "index.faiss"
METRICS = ("dot", "cosine")
EF_LADDER = (16, 32, 64, 128, 256, 512, 1024)
# Standard deviation of the default recall-check queries (perturbed items), relative to the items' own.
_PERTURB_SCALE = 0.5


@dataclass(frozen=True)
class IndexConfig:
    """How to index a catalog; defaults reach recall@10 >= 0.95 on 1M x 64 embeddings (bench/index.py)."""

    metric: str = "dot"  # "dot" | "cosine" (cosine: normalise item vectors and queries)
    # Catalogs up to this size use exact search, larger ones faiss HNSW: at 40k items x 64 an exact scan
    # costs ~0.2 ms of a core per query, the tuned graph ~0.07 ms at recall@10 >= 0.98 (bench/serving.py).
    exact_max_items: int = 20_000
    hnsw_m: int = 32
    # Graph quality, not the search beam, limits inner-product recall at 1M items: efConstruction 200 stalls
    # near 0.97 however wide the search, 400 reaches 0.98 (bench/index.py); it doubles build time.
    ef_construction: int = 400
    # Search beam; None: the worker picks the smallest of EF_LADDER whose measured recall@recall_k reaches
    # target_recall (40k items: 32-64; 1M: 256-512), so latency is spent only where recall needs it.
    ef_search: int | None = None
    target_recall: float = 0.98
    recall_k: int = 10
    recall_queries: int = 500  # sampled queries for the build-time recall check
    seed: int = 0
    # Queries needing more candidates than this (k + exclusions + margin) go to a full numpy scan instead:
    # beyond it a wide HNSW beam costs about as much as a full scan of a 1M catalog.
    max_fetch: int = 1024
    # OpenMP threads for building and for batch searches (0: OpenMP's default); single queries use 1.
    threads: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        for name in ("hnsw_m", "ef_construction", "recall_k", "max_fetch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ef_search is not None and self.ef_search < 1:
            raise ValueError(f"ef_search must be >= 1 or None (auto), got {self.ef_search}")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.exact_max_items < 0 or self.recall_queries < 0 or self.threads < 0:
            raise ValueError("exact_max_items, recall_queries and threads must be >= 0")


def _faiss() -> Any:
    """Import faiss on first use (keeps it out of processes that only serve exact indexes)."""
    import faiss

    return faiss


@contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """Run faiss with n OpenMP threads (0: leave as is); the setting is per calling thread in OpenMP."""
    if n <= 0:
        yield
        return
    faiss = _faiss()
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _as_matrix(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    """A C-contiguous float32 2-D copy-if-needed of x, checked against the expected dimension."""
    m = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    if m.ndim != 2 or (dim is not None and m.shape[1] != dim):
        raise ValueError(f"{what} must have shape (n, {dim if dim is not None else 'dim'}), got {m.shape}")
    return m


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero, so their cosine with anything is 0)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = (x / np.where(norms > 0, norms, 1)).astype(np.float32)
    return out


def _checksum(x: np.ndarray) -> int:
    """CRC32 of the factors, so load_index can refuse an index saved for other factors."""
    return zlib.crc32(np.ascontiguousarray(x).reshape(-1).view(np.uint8).data)


def _exclusion_arrays(
    n_queries: int, n_items: int, indptr: np.ndarray | None, indices: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated exclusion CSR (empty when none); as in search.search, indptr holds offsets into indices.

    indices is returned as given (not copied): it may be a model's whole seen-items array, with indptr a
    slice of that model's indptr, so only the referenced range is checked.
    """
    if indptr is None or indices is None:
        if indptr is not None or indices is not None:
            raise ValueError("pass both exclude_indptr and exclude_indices, or neither")
        return np.zeros(n_queries + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ptr = np.asarray(indptr, dtype=np.int64)
    idx = np.asarray(indices)
    if ptr.shape != (n_queries + 1,) or ptr[0] < 0 or ptr[-1] > idx.shape[0] or np.any(np.diff(ptr) < 0):
        raise ValueError(f"exclude_indptr must be {n_queries + 1} non-decreasing offsets into exclude_indices")
    used = idx[ptr[0] : ptr[-1]]
    # A negative index would silently exclude an item counted from the end, so range-check here.
    if used.shape[0] and (used.min() < 0 or used.max() >= n_items):
        raise ValueError(f"exclude_indices must lie in [0, {n_items})")
    return ptr, idx


def _exact_chunked(
    queries: np.ndarray, items: np.ndarray, k: int, indptr: np.ndarray, indices: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """search.search, with a BLAS-free path for a single query."""
    if queries.shape[0] == 1:
        # A single query through BLAS hands the product to OpenBLAS worker threads; on a busy host that
        # waits for a scheduler slice (12 ms median at 40k items vs 0.4 ms for numpy's own einsum loop).
        scores = np.einsum("md,nd->mn", queries, items)
        scores[0, indices[indptr[0] : indptr[1]]] = -np.inf
        ids, top = topk_rows(scores, k)
        keep = np.isfinite(top[0])
        return [(ids[0][keep], top[0][keep])]
    # search.search chunks the queries itself, bounding each score matrix's memory.
    return exact_search(queries, items, k, indptr, indices)


def _member(cand: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """cand[r, j] in excluded[r, :] for every row at once, by broadcasting (small arrays: no sorting)."""
    out: np.ndarray = (cand[:, :, None] == excluded[:, None, :]).any(axis=2)
    return out


def _member_rows(cand: np.ndarray, ptr: np.ndarray, idx: np.ndarray, n_items: int) -> np.ndarray:
    """cand[r, j] in row r of the exclusion CSR (ptr, idx)."""
    lengths = np.diff(ptr)
    width = int(lengths.max())
    if cand.size * width <= 1 << 18:
        # Exclusions padded to one width with -2 (never an item, nor faiss's -1): one broadcast compare.
        padded = np.full((cand.shape[0], width), -2, dtype=np.int64)
        row_of = np.repeat(np.arange(cand.shape[0]), lengths)
        padded[row_of, np.arange(idx.shape[0]) - ptr[row_of]] = idx
        return _member(cand, padded)
    # Keys row·n_items + item match each candidate against its own row's exclusions in one sorted isin.
    row_of = np.repeat(np.arange(cand.shape[0], dtype=np.int64), lengths)
    excluded_keys = row_of * n_items + idx.astype(np.int64)
    cand_keys = np.arange(cand.shape[0], dtype=np.int64)[:, None] * n_items + cand
    out: np.ndarray = np.isin(cand_keys, excluded_keys)
    return out


class ItemIndex:
    """Common part of both index kinds: metric handling, the over-fetch-and-filter search, stats, save()."""

    kind: str = ""

    def __init__(self, item_factors: np.ndarray, config: IndexConfig, stats: dict[str, Any]) -> None:
        raw = _as_matrix(item_factors, None, "item_factors")
        self.config = config
        self.n_items, self.dim = int(raw.shape[0]), int(raw.shape[1])
        self.checksum = _checksum(raw)
        # Cosine is inner product of unit vectors: normalise once here and every query in _prepare.
        self.vectors = _normalise(raw) if config.metric == "cosine" else raw
        self.stats = stats
        # Queries answered by a full numpy scan instead of candidates since construction (for monitoring).
        self.fallback_count = 0

    def _prepare(self, queries: np.ndarray) -> np.ndarray:
        """Queries as float32 rows in the index's space (unit length for cosine)."""
        q = _as_matrix(queries, self.dim, "queries")
        return _normalise(q) if self.config.metric == "cosine" else q

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude_indptr: np.ndarray | None = None,
        exclude_indices: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Best-first (item indices, scores) per query; row r excludes indices[indptr[r]:indptr[r+1]]."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self._prepare(queries)
        ptr, idx = _exclusion_arrays(q.shape[0], self.n_items, exclude_indptr, exclude_indices)
        return self._search(q, k, ptr, idx)

    def candidates(self, q: np.ndarray, fetch: int) -> np.ndarray:
        """Top-`fetch` item ids per query, best first (-1 where fewer were found); kind-specific."""
        raise NotImplementedError

    def _threads(self, n_queries: int) -> int:
        # One query is too little work to split, and in the API many requests run at once anyway.
        return 1 if n_queries == 1 else self.config.threads

    def _fetch_width(self, k: int, n_excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates to fetch per query, and which queries would need more than max_fetch."""
        # Each excluded item can take one slot of the answer, so fetch that many more, plus a margin so a
        # few -1 paddings (HNSW) don't send a row to the fallback; widths are rounded up to powers of two
        # so a batch with varied exclusion counts needs only a few candidate calls.
        need = k + n_excluded + max(4, k // 4)
        cap = max(1, min(self.config.max_fetch, self.n_items))
        fetch = np.minimum(2 ** np.ceil(np.log2(need)).astype(np.int64), cap)
        return fetch, need > cap

    def _search_one(self, q: np.ndarray, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """One query with few numpy calls (the API's single-user path); None when it must fall back."""
        fetch, too_wide = self._fetch_width(k, np.array([excluded.shape[0]]))
        if too_wide[0]:
            return None
        cand = self.candidates(q, int(fetch[0]))[0].astype(np.int64)
        valid = cand >= 0
        if excluded.shape[0]:
            valid &= ~_member(cand[None, :], excluded[None, :])[0]
        picked = cand[valid][:k]
        if picked.shape[0] < k:
            return None
        # The same einsum as the batch path, so a user's scores do not depend on the batch they came in.
        scores = np.einsum("qd,qkd->qk", q, self.vectors[picked][None]).astype(np.float32)[0]
        order = np.argsort(-scores, kind="stable")
        return picked[order], scores[order]

    def _search(self, q: np.ndarray, k: int, ptr: np.ndarray, idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n_q = q.shape[0]
        if n_q == 1:
            answer = self._search_one(q, k, idx[ptr[0] : ptr[1]])
            if answer is not None:
                return [answer]
        fetch, too_wide = self._fetch_width(k, np.diff(ptr))
        ids_out = np.full((n_q, k), -1, dtype=np.int64)
        short = too_wide.copy()
        for width in np.unique(fetch[~too_wide]):
            rows = np.flatnonzero((fetch == width) & ~too_wide)
            cand = self.candidates(q[rows], int(width)).astype(np.int64)
            valid = cand >= 0
            sub_ptr, sub_idx = gather_exclusions(rows, ptr, idx)
            if sub_idx.shape[0]:
                valid &= ~_member_rows(cand, sub_ptr, sub_idx, self.n_items)
            # A stable sort on "invalid" moves the valid candidates to the front in best-first order.
            first = np.argsort(~valid, axis=1, kind="stable")[:, :k]
            picked = np.take_along_axis(cand, first, axis=1)
            ok = np.take_along_axis(valid, first, axis=1)
            ids_out[rows] = np.where(ok, picked, -1)
            short[rows] = ~ok.all(axis=1)
        results: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64), np.zeros(0, np.float32))] * n_q
        full = np.flatnonzero(~short)
        if full.shape[0]:
            picked = ids_out[full]
            # True scores in numpy (faiss's SIMD sums round differently), re-sorted so order matches them.
            scores = np.einsum("qd,qkd->qk", q[full], self.vectors[picked]).astype(np.float32)
            order = np.argsort(-scores, axis=1, kind="stable")
            picked = np.take_along_axis(picked, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            for j, row in enumerate(full):
                results[row] = (picked[j], scores[j])
        fallback = np.flatnonzero(short)
        if fallback.shape[0]:
            sub_ptr, sub_idx = gather_exclusions(fallback, ptr, idx)
            exact = _exact_chunked(q[fallback], self.vectors, k, sub_ptr, sub_idx)
            for row, res in zip(fallback, exact, strict=True):
                results[row] = res
        self.fallback_count += int(fallback.shape[0])
        return results

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary: kind, metric, size, parameters and the build-time measurements."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "metric": self.config.metric,
            "n_items": self.n_items,
            "dim": self.dim,
            "exact_max_items": self.config.exact_max_items,
            "max_fetch": self.config.max_fetch,
        }
        if self.kind == "hnsw":
            out.update(
                hnsw_m=self.config.hnsw_m,
                ef_construction=self.config.ef_construction,
                ef_search=self.config.ef_search,
            )
        out.update(self.stats)
        out["index_bytes"] = self.nbytes()
        return out

    def nbytes(self) -> int:
        """Memory held by the index itself (not counting the model's own copy of the factors)."""
        return int(self.vectors.nbytes) if self.config.metric == "cosine" else 0

    def save(self, directory: Path) -> None:
        """Write index.json (and the kind's binary files); no pickle anywhere."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "metric": self.config.metric,
            "n_items": self.n_items,
            "dim": self.dim,
            "items_crc32": self.checksum,
            "config": asdict(self.config),
            "stats": self.stats,
        }
        self._save_files(directory)
        # json last: a reader that finds it can rely on the binary files being complete.
        (directory / INDEX_META).write_text(json.dumps(meta, indent=1))

    def _save_files(self, directory: Path) -> None:
        """Kind-specific binary files (none for exact)."""


class ExactIndex(ItemIndex):
    """Brute-force search: recall 1 by construction.

    Candidates come from faiss.knn (blocked BLAS products with a heap per query, no full score
    matrix): at 40k items it answers 10,000 users in a fraction of the time numpy's product plus
    argpartition takes, and a single query in about half.
    """

    kind = "exact"

    def candidates(self, q: np.ndarray, fetch: int) -> np.ndarray:
        faiss = _faiss()
        with _faiss_threads(self._threads(q.shape[0])):
            _, ids = faiss.knn(q, self.vectors, fetch, metric=faiss.METRIC_INNER_PRODUCT)
        out: np.ndarray = ids
        return out


class HNSWIndex(ItemIndex):
    """faiss IndexHNSWFlat on inner product, with over-fetch + filter for exclusions and exact fallback."""

    kind = "hnsw"

    def __init__(self, item_factors: np.ndarray, config: IndexConfig, stats: dict[str, Any], faiss_index: Any) -> None:
        super().__init__(item_factors, config, stats)
        self.index = faiss_index

    def nbytes(self) -> int:
        # Flat storage (a second copy of the vectors) plus the neighbour lists, levels and offsets.
        hnsw = self.index.hnsw
        graph = 4 * (hnsw.neighbors.size() + hnsw.levels.size()) + 8 * hnsw.offsets.size()
        return int(self.n_items * self.dim * 4 + graph) + super().nbytes()

    def candidates(self, q: np.ndarray, fetch: int) -> np.ndarray:
        faiss = _faiss()
        params = faiss.SearchParametersHNSW()
        # faiss widens the beam to at least `fetch` itself; efSearch sets the floor for small fetches.
        params.efSearch = max(self.config.ef_search or EF_LADDER[-1], fetch)
        with _faiss_threads(self._threads(q.shape[0])):
            _, ids = self.index.search(q, fetch, params=params)
        out: np.ndarray = ids
        return out

    def _save_files(self, directory: Path) -> None:
        _faiss().write_index(self.index, str(directory / INDEX_FILE))


def _recall_queries(vectors: np.ndarray, config: IndexConfig, sample_queries: np.ndarray | None) -> np.ndarray:
    """Up to recall_queries queries for the recall check: a sample of the given ones, else perturbed items."""
    rng = np.random.default_rng(config.seed)
    if sample_queries is not None:
        pool = _as_matrix(sample_queries, vectors.shape[1], "sample_queries")
        if pool.shape[0] > config.recall_queries:
            pool = pool[np.sort(rng.choice(pool.shape[0], config.recall_queries, replace=False))]
        return pool
    n = min(config.recall_queries, vectors.shape[0])
    base = vectors[np.sort(rng.choice(vectors.shape[0], n, replace=False))]
    # Noise on the items' own per-dimension scale, so queries land near (not on) catalog items.
    noise = rng.standard_normal(base.shape) * (_PERTURB_SCALE * vectors.std(axis=0))
    out: np.ndarray = (base + noise).astype(np.float32)
    return out


def _exact_top(index: ItemIndex, q: np.ndarray, k: int) -> list[np.ndarray]:
    empty = np.zeros(q.shape[0] + 1, dtype=np.int64)
    return [ids for ids, _ in _exact_chunked(q, index.vectors, k, empty, np.zeros(0, dtype=np.int64))]


def _recall(index: HNSWIndex, q: np.ndarray, truth: list[np.ndarray], k: int) -> float:
    """Mean |HNSW top-k ∩ exact top-k| / k of the raw graph search (no exclusions, no fallback)."""
    found = index.candidates(q, k)
    hits = sum(np.intersect1d(t, f).shape[0] for t, f in zip(truth, found, strict=True))
    return float(hits / (k * q.shape[0]))


def _tune_ef_search(index: HNSWIndex, queries: np.ndarray) -> dict[str, Any]:
    """Set the index's ef_search (the configured one, or the smallest on EF_LADDER reaching target_recall)
    and return the recall measured at it, plus the recall at each beam tried."""
    config = index.config
    k = min(config.recall_k, index.n_items)
    if queries.shape[0] == 0:
        index.config = replace(config, ef_search=config.ef_search or EF_LADDER[-1])
        return {f"recall@{config.recall_k}": None}
    q = index._prepare(queries)
    truth = _exact_top(index, q, k)
    ladder = (config.ef_search,) if config.ef_search is not None else EF_LADDER
    curve: dict[str, float] = {}
    for ef in ladder:
        index.config = replace(config, ef_search=ef)
        curve[str(ef)] = round(_recall(index, q, truth, k), 4)
        if curve[str(ef)] >= config.target_recall:
            break
    out: dict[str, Any] = {f"recall@{config.recall_k}": curve[str(index.config.ef_search)]}
    if config.ef_search is None:
        out |= {"ef_search_auto": True, "target_recall": config.target_recall, "recall_by_ef_search": curve}
    return out


def build_index(item_factors: np.ndarray, config: IndexConfig, sample_queries: np.ndarray | None = None) -> ItemIndex:
    """Exact index for catalogs up to exact_max_items, else HNSW with its recall@recall_k measured."""
    factors = _as_matrix(item_factors, None, "item_factors")
    n_items = factors.shape[0]
    if n_items <= config.exact_max_items:
        stats = {
            f"recall@{config.recall_k}": 1.0,
            "recall_k": config.recall_k,
            "build_seconds": 0.0,
            "recall_queries": 0,
        }
        return ExactIndex(factors, config, stats)
    faiss = _faiss()
    started = time.perf_counter()
    vectors = _normalise(factors) if config.metric == "cosine" else factors
    graph = faiss.IndexHNSWFlat(factors.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    # efConstruction is read during add, so it must be set before the vectors go in.
    graph.hnsw.efConstruction = config.ef_construction
    with _faiss_threads(config.threads):
        graph.add(vectors)
    build_seconds = time.perf_counter() - started
    index = HNSWIndex(factors, config, {}, graph)
    started = time.perf_counter()
    queries = _recall_queries(index.vectors, config, sample_queries)
    measured = _tune_ef_search(index, queries)
    index.stats = {
        **measured,
        "recall_k": config.recall_k,
        "build_seconds": round(build_seconds, 3),
        "recall_seconds": round(time.perf_counter() - started, 3),
        "recall_queries": int(queries.shape[0]),
        "recall_query_source": "sample" if sample_queries is not None else "perturbed_items",
    }
    return index


def load_index(directory: Path, item_factors: np.ndarray) -> ItemIndex:
    """Read an index saved by ItemIndex.save for exactly these item factors."""
    meta = json.loads((directory / INDEX_META).read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"index format version {version} is not supported (expected {FORMAT_VERSION})")
    factors = _as_matrix(item_factors, None, "item_factors")
    if factors.shape != (meta["n_items"], meta["dim"]) or _checksum(factors) != meta["items_crc32"]:
        raise ValueError(
            f"item factors {factors.shape} do not match the ones the index was built for "
            f"({meta['n_items']}, {meta['dim']}) (shape or checksum differs)"
        )
    # Unknown keys (written by a newer version) are ignored rather than failing the load.
    known = {f.name for f in fields(IndexConfig)}
    config = IndexConfig(**{key: value for key, value in meta["config"].items() if key in known})
    stats: dict[str, Any] = meta.get("stats", {})
    if meta["kind"] == "exact":
        return ExactIndex(factors, config, stats)
    if meta["kind"] != "hnsw":
        raise ValueError(f"unknown index kind {meta['kind']!r}")
    graph = _faiss().read_index(str(directory / INDEX_FILE))
    if graph.ntotal != factors.shape[0] or graph.d != factors.shape[1]:
        raise ValueError(f"{INDEX_FILE} holds {graph.ntotal} x {graph.d}, expected {factors.shape}")
    return HNSWIndex(factors, config, stats, graph)
