"""Benchmark app.recsys.index: exact numpy vs faiss HNSW (vs faiss IndexFlatIP) on synthetic embeddings.

    .venv/bin/python bench/index.py                      # 40k and 1M items at dim 64
    .venv/bin/python bench/index.py --n-items 40000 --repeats 5
    .venv/bin/python bench/index.py --n-items 1000000 --save-dir /tmp/idx1m   # reuse the graph next time
    .venv/bin/python bench/index.py --n-items 1000000 --ef-search 64 128 256   # sweep efSearch

Synthetic catalog (meant to look like trained MF embeddings rather than isotropic noise): items belong to
n_items/1000 clusters ("genres") of Zipf-distributed sizes; cluster centres and within-cluster offsets are
Gaussian with a decaying spectrum (axis j has scale j^-1/2, then a random rotation), so most variance sits
in a few directions; the within-cluster spread is 0.6 of the between-cluster spread, and each item's
norm is scaled by exp(0.3·N(0,1)), as popular items end up with larger norms. Queries are users: a random
mix of two cluster centres plus the same kind of noise. Each query excludes 50 "seen" items: 25 drawn from
its exact top-100 (so exclusions bite) and 25 uniform.

Reported per method: build seconds, index memory (structure bytes, and the process RSS growth while
building), recall@10 of the served answer (with exclusions) against exact search with the same
exclusions ("recall@10"), the build-time check of describe() re-measured at each efSearch (raw graph
search, no exclusions, on --recall-queries other users: "sample r@10"), single-query latency p50/p99
over --queries queries (one call per query, k=10, excluding its seen items), and batch throughput (all
queries in one call). Timings are medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.recsys.index import (  # noqa: E402
    INDEX_META,
    IndexConfig,
    ItemIndex,
    _exact_top,
    _recall,
    build_index,
    load_index,
)

K = 10
SEEN = 50
Results = list[tuple[np.ndarray, np.ndarray]]


def synthetic_catalog(n_items: int, dim: int, n_users: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered, anisotropic item factors and user queries (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_clusters = max(8, n_items // 1000)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    basis = (np.arange(1, dim + 1) ** -0.5)[:, None] * rotation  # decaying spectrum, random directions
    centres = rng.standard_normal((n_clusters, dim)) @ basis
    sizes = (np.arange(1, n_clusters + 1) ** -0.8)[rng.permutation(n_clusters)]
    cluster = rng.choice(n_clusters, size=n_items, p=sizes / sizes.sum())
    items = np.empty((n_items, dim), dtype=np.float32)
    for start in range(0, n_items, 1 << 18):
        stop = min(start + (1 << 18), n_items)
        noise = rng.standard_normal((stop - start, dim)) @ basis
        scale = np.exp(0.3 * rng.standard_normal((stop - start, 1)))
        items[start:stop] = (centres[cluster[start:stop]] + 0.6 * noise) * scale
    picks = rng.choice(n_clusters, size=(n_users, 2), p=sizes / sizes.sum())
    mix = rng.random((n_users, 1))
    users = mix * centres[picks[:, 0]] + (1 - mix) * centres[picks[:, 1]]
    users += 0.6 * rng.standard_normal((n_users, dim)) @ basis
    return items, users.astype(np.float32)


def seen_items(truth: Results, n_items: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exclusion CSR: per query SEEN/2 items of its exact top-100 and SEEN/2 uniform ones (deduplicated)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ids, _ in truth:
        near = rng.choice(ids, size=SEEN // 2, replace=False)
        rows.append(np.unique(np.concatenate([near, rng.choice(n_items, SEEN - SEEN // 2)])))
    indptr = np.concatenate([[0], np.cumsum([r.shape[0] for r in rows])]).astype(np.int64)
    return indptr, np.concatenate(rows).astype(np.int32)


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def recall(found: Results, truth: Results) -> float:
    """Mean |found ∩ truth| / |truth| over queries."""
    hits = [np.intersect1d(f[0], t[0]).shape[0] / max(1, t[0].shape[0]) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def time_single(
    search: Callable[[np.ndarray, np.ndarray, np.ndarray], Results],
    queries: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
) -> tuple[float, float, Results]:
    """p50/p99 milliseconds of one call per query (each with its own seen items), and the answers."""
    times = []
    answers: Results = []
    for r in range(queries.shape[0]):
        lo, hi = indptr[r], indptr[r + 1]
        ptr = np.array([0, hi - lo], dtype=np.int64)
        started = time.perf_counter()
        answers.extend(search(queries[r : r + 1], ptr, indices[lo:hi]))
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), answers


class FlatIP:
    """faiss IndexFlatIP reference with the same over-fetch-and-filter handling of exclusions."""

    def __init__(self, items: np.ndarray) -> None:
        import faiss

        self.faiss = faiss
        self.index = faiss.IndexFlatIP(items.shape[1])
        self.index.add(items)

    def search(self, q: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> Results:
        """Top-K per query after dropping its excluded items (fetch K + its exclusion count)."""
        fetch = K + int(np.diff(indptr).max(initial=0))
        threads = 1 if q.shape[0] == 1 else self.faiss.omp_get_max_threads()
        previous = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(threads)
        try:
            scores, ids = self.index.search(q, fetch)
        finally:
            self.faiss.omp_set_num_threads(previous)
        out: Results = []
        for r in range(q.shape[0]):
            keep = ~np.isin(ids[r], indices[indptr[r] : indptr[r + 1]]) & (ids[r] >= 0)
            out.append((ids[r][keep][:K], scores[r][keep][:K]))
        return out


def bench_one(
    name: str,
    build: Callable[[], Any],
    search: Callable[[Any, np.ndarray, np.ndarray, np.ndarray], Results],
    queries: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    truth: Results,
    repeats: int,
    nbytes: Callable[[Any], int],
) -> dict[str, Any]:
    """Build once, then time single queries and one batch `repeats` times; medians of each."""
    before = rss_bytes()
    started = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - started
    grown = rss_bytes() - before
    p50s, p99s, qps = [], [], []
    answers: Results = []
    for _ in range(repeats):
        p50, p99, answers = time_single(lambda q, p, i: search(index, q, p, i), queries, indptr, indices)
        p50s.append(p50)
        p99s.append(p99)
        started = time.perf_counter()
        batch = search(index, queries, indptr, indices)
        qps.append(queries.shape[0] / (time.perf_counter() - started))
    short = sum(a[0].shape[0] < K for a in answers)
    row = {
        "method": name,
        "build_s": build_s,
        "index_mb": nbytes(index) / 2**20,
        "rss_mb": grown / 2**20,
        "recall": recall(answers, truth),
        "batch_recall": recall(batch, truth),
        "p50_ms": statistics.median(p50s),
        "p99_ms": statistics.median(p99s),
        "p99_runs": p99s,
        "qps": statistics.median(qps),
        "short": short,
        "index": index,
    }
    print(
        f"  {name}: build {build_s:.1f}s  recall {row['recall']:.4f}  p50 {row['p50_ms']:.3f}ms  "
        f"p99 {row['p99_ms']:.3f}ms (runs {', '.join(f'{p:.2f}' for p in p99s)})  "
        f"batch {row['qps']:.0f} q/s",
        flush=True,
    )
    return row


def run(n_items: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """All methods on one catalog size; returns table rows."""
    print(f"\n== {n_items:,} items x {args.dim} ==", flush=True)
    items, users = synthetic_catalog(n_items, args.dim, args.queries + args.recall_queries, seed=args.seed)
    queries, sample = users[: args.queries], users[args.queries :]
    exact_cfg = IndexConfig(exact_max_items=n_items)
    exact = build_index(items, exact_cfg)
    started = time.perf_counter()
    top100 = exact.search(queries, 100)
    indptr, indices = seen_items(top100, n_items)
    truth = exact.search(queries, K, indptr, indices)
    print(f"  ground truth for {args.queries} queries in {time.perf_counter() - started:.1f}s", flush=True)

    def search(index: ItemIndex, q: np.ndarray, p: np.ndarray, i: np.ndarray) -> Results:
        return index.search(q, K, p, i)

    rows = []
    if not args.skip_exact:
        rows.append(
            bench_one(
                "exact numpy",
                lambda: exact,
                search,
                queries,
                indptr,
                indices,
                truth,
                args.repeats,
                lambda ix: ix.nbytes(),
            )
        )
        rows.append(
            bench_one(
                "faiss FlatIP",
                lambda: FlatIP(items),
                lambda ix, q, p, i: ix.search(q, p, i),
                queries,
                indptr,
                indices,
                truth,
                args.repeats,
                lambda ix: ix.index.ntotal * args.dim * 4,
            )
        )
    base = IndexConfig(exact_max_items=0, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, seed=args.seed)
    saved = args.save_dir / f"hnsw_{n_items}_m{args.hnsw_m}_efc{args.ef_construction}" if args.save_dir else None

    def build_hnsw() -> ItemIndex:
        if saved is not None and (saved / INDEX_META).exists():
            return load_index(saved, items)
        index = build_index(items, base, sample_queries=sample)
        if saved is not None:
            index.save(saved)
        print(f"  describe() at build: {json.dumps(index.describe())}", flush=True)
        return index

    built: ItemIndex | None = None
    for ef in args.ef_search:

        def build_ef(ef: int = ef) -> ItemIndex:
            nonlocal built
            if built is None:
                built = build_hnsw()
            built.config = replace(built.config, ef_search=ef)
            built.fallback_count = 0  # type: ignore[attr-defined]
            return built

        row = bench_one(
            f"HNSW M{args.hnsw_m} efC{args.ef_construction} ef{ef}",
            build_ef,
            search,
            queries,
            indptr,
            indices,
            truth,
            args.repeats,
            lambda ix: ix.nbytes(),
        )
        if built is not None:
            stats = built.describe()
            # describe() holds the recall at build time's efSearch; re-measure on the same sample at this one.
            q = built._prepare(sample)
            k = built.config.recall_k
            row["build_recall"] = _recall(built, q, _exact_top(built, q, k), k)  # type: ignore[arg-type]
            row["build_s"] = stats.get("build_seconds", row["build_s"]) if ef == args.ef_search[0] else 0.0
            row["fallbacks"] = getattr(built, "fallback_count", 0)
        rows.append(row)
    return rows


def main() -> None:
    """Parse flags, run each catalog size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-items", type=int, nargs="+", default=[40_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--recall-queries", type=int, default=500, help="user sample for the build-time check")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hnsw-m", type=int, default=IndexConfig.hnsw_m)
    parser.add_argument("--ef-construction", type=int, default=IndexConfig.ef_construction)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--save-dir", type=Path, default=None, help="cache built HNSW graphs here")
    parser.add_argument("--skip-exact", action="store_true", help="only HNSW (ground truth is still exact)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table: list[tuple[int, dict[str, Any]]] = []
    for n in args.n_items:
        table.extend((n, row) for row in run(n, args))
    print(f"\nk={K}, {args.queries} queries each excluding ~{SEEN} seen items; medians of {args.repeats} runs")
    print(
        f"{'items':>9} {'method':<28} {'build s':>8} {'index MB':>9} {'RSS +MB':>8} {'recall@10':>9} "
        f"{'sample r@10':>11} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'batch q/s':>9} {'fallback':>8}"
    )
    for n, r in table:
        build_recall = r.get("build_recall")
        print(
            f"{n:>9,} {r['method']:<28} {r['build_s']:>8.1f} {r['index_mb']:>9.0f} {r['rss_mb']:>8.0f} "
            f"{r['recall']:>9.4f} "
            f"{'' if build_recall is None else f'{build_recall:.4f}':>11} "
            f"{r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} "
            f"{r['qps']:>9.0f} {r.get('fallbacks', ''):>8}"
        )


if __name__ == "__main__":
    main()
