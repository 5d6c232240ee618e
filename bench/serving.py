"""Serving speed: in-process query latency (the floor) and HTTP throughput under wrk, per catalog size.

    .venv/bin/python bench/serving.py [--catalogs 40000,1000000] [--users 50000] [--dim 64] [--seconds 20]
    .venv/bin/python bench/serving.py --filters [--catalogs 1000000] [--ef-construction 400] [--queries 2000]

With --filters (no wrk, no server): in-process p50/p99 of one user's top-10 (exclude_seen) unfiltered and
with filters keeping 50 %, 5 % and 0.1 % of the items (`bucket < N` over a uniform numeric attribute,
compiled once as the API's filter cache does; the compile time is reported), on the index the worker
would build, plus the recall@10 of each filtered answer against an exact scan of the allowed items.

For each catalog: builds a model artifact with clustered synthetic factors (shaped like trained
embeddings) and the index the worker would build for it (exact up to 20,000 items, HNSW above, its
recall@10 measured against exact search with the model's users as queries), registers it in a fresh
embedded database, starts one `unfold api` (its default: one server process per core) and drives it
with wrk at 32 connections: GET /v1/models/{id}/users/{u}/recommendations?k=10&exclude_seen=true for
random users. Then one POST .../recommendations/batch for 10,000 users over HTTP. Prints req/s, p50,
p99, errors, the HTTP overhead against the in-process p50, and the batch time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import REPO, machine, print_table

from app.config import Settings
from app.db import session_scope
from app.migrate import upgrade
from app.models import Model
from app.recsys.artifact import ModelArtifact, load_model, save_model
from app.recsys.index import IndexConfig, ItemIndex, build_index, load_index
from app.services import serving
from app.services.models import model_key
from app.storage import open_store, publishing

WRK_SCRIPT = """
math.randomseed(1)
request = function()
  local u = math.random(0, {n_users} - 1)
  return wrk.format("GET", "/v1/models/{model}/users/u" .. u .. "/recommendations?k=10&exclude_seen=true")
end
"""


def synthetic_model(n_users: int, n_items: int, dim: int, seen_per_user: int, seed: int) -> ModelArtifact:
    """Clustered factors and a seen-items CSR, so exclusion and top-k do real work."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, dim)).astype(np.float32)
    items = centers[rng.integers(0, 64, n_items)] + 0.5 * rng.normal(size=(n_items, dim)).astype(np.float32)
    users = centers[rng.integers(0, 64, n_users)] + 0.5 * rng.normal(size=(n_users, dim)).astype(np.float32)
    popularity = rng.zipf(1.3, size=n_users * seen_per_user) % n_items
    seen = np.sort(popularity.reshape(n_users, seen_per_user), axis=1)
    indptr = np.arange(0, n_users * seen_per_user + 1, seen_per_user, dtype=np.int64)
    return ModelArtifact(
        user_factors=users / np.sqrt(dim),
        item_factors=items / np.sqrt(dim),
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        seen_indptr=indptr,
        seen_indices=seen.ravel().astype(np.int32),
        meta={"algorithm": "synthetic", "spec": {}},
    )


def register(settings: Settings, artifact: ModelArtifact, index: ItemIndex) -> str:
    upgrade(settings.resolved_database_url)
    store = open_store(settings.resolved_artifact_root)
    with publishing(store, model_key("mdl_bench")) as staged:
        index.save(staged)
        save_model(staged, artifact)
    with session_scope(settings.resolved_database_url) as session:
        session.add(
            Model(
                id="mdl_bench",
                job_id="job_bench",
                dataset_id="ds_bench",
                algorithm="synthetic",
                dim=artifact.dim,
                spec={},
                metrics={},
                index=index.describe(),
                artifact_key=model_key("mdl_bench"),
            )
        )
    return "mdl_bench"


def in_process(settings: Settings, model_id: str, n_users: int, queries: int) -> dict[str, float]:
    cache = serving.ModelCache(open_store(settings.resolved_artifact_root), 1 << 34)
    model = cache.get(model_id, model_key(model_id))
    rng = np.random.default_rng(0)
    users = [f"u{u}" for u in rng.integers(0, n_users, queries)]
    serving.recommend_for_users(model, users[:10], 10, True)  # warm the lookups
    times = []
    for user in users:
        start = time.perf_counter()
        serving.recommend_for_users(model, [user], 10, True)
        times.append(time.perf_counter() - start)
    batch_users = [f"u{u}" for u in rng.integers(0, n_users, 10_000)]
    start = time.perf_counter()
    serving.recommend_batch(model, batch_users, 10, True)
    batch = time.perf_counter() - start
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "batch10k_s": batch}


def wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_errors = int(errors.group(1)) if errors else 0
    if socket_errors:
        n_errors += sum(int(g) for g in socket_errors.groups())
    return {"req_s": rps, "p50_ms": latency("50"), "p99_ms": latency("99"), "errors": n_errors}


def http_batch(base: str, model_id: str, n_users: int, size: int, repeats: int = 3) -> float:
    """Median seconds for one POST .../recommendations/batch of `size` random users, measured from outside."""
    rng = np.random.default_rng(2)
    times = []
    with httpx.Client(timeout=120) as client:
        for _ in range(repeats):
            users = [f"u{u}" for u in rng.integers(0, n_users, size)]
            start = time.perf_counter()
            body = {"users": users, "k": 10, "exclude_seen": True}
            r = client.post(f"{base}/v1/models/{model_id}/recommendations/batch", json=body)
            times.append(time.perf_counter() - start)
            assert r.status_code == 200 and len(r.json()["results"]) == len(set(users)), r.text[:300]
    return float(np.median(times))


def bench_catalog(n_items: int, args: argparse.Namespace) -> dict[str, object]:
    var = Path(tempfile.mkdtemp(prefix="unfold-bench-"))
    settings = Settings(var_dir=var)
    artifact = synthetic_model(args.users, n_items, args.dim, args.seen, seed=0)
    started = time.perf_counter()
    index = build_index(artifact.item_factors, IndexConfig(), sample_queries=artifact.user_factors)
    built = time.perf_counter() - started
    model_id = register(settings, artifact, index)
    floor = in_process(settings, model_id, args.users, 2000)

    env = {k: v for k, v in os.environ.items() if not k.startswith("UNFOLD_")}
    env |= {"UNFOLD_VAR_DIR": str(var), "UNFOLD_PORT": str(args.port)}
    if args.api_workers:
        env["UNFOLD_API_WORKERS"] = str(args.api_workers)
    api = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(240):
            try:
                if httpx.get(f"{base}/v1/models/{model_id}/users/u0/recommendations").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        script = var / "recs.lua"
        script.write_text(WRK_SCRIPT.replace("{n_users}", str(args.users)).replace("{model}", model_id))
        # Unmeasured warm-up: every API process loads the model (seconds at 1M items) before the clock starts.
        wrk(base, script, 5, args.connections)
        http = wrk(base, script, args.seconds, args.connections)
        batch_http = http_batch(base, model_id, args.users, 10_000)
    finally:
        api.terminate()
        api.wait(timeout=30)
        shutil.rmtree(var, ignore_errors=True)
    described = index.describe()
    return {
        "items": n_items,
        "index": described["kind"],
        "ef_search": described.get("ef_search", ""),
        "recall@10": described["recall@10"],
        "build s": built,
        "in-process p50 ms": floor["p50_ms"],
        "in-process p99 ms": floor["p99_ms"],
        "req/s": http["req_s"],
        "HTTP p50 ms": http["p50_ms"],
        "HTTP p99 ms": http["p99_ms"],
        "errors": http["errors"],
        "HTTP/in-process p50": http["p50_ms"] / floor["p50_ms"],
        "batch 10k in-process s": floor["batch10k_s"],
        "batch 10k HTTP s": batch_http,
    }


SELECTIVITIES = (0.5, 0.05, 0.001)


def bench_filters(n_items: int, args: argparse.Namespace) -> list[dict[str, object]]:
    """In-process latency of filtered queries against the unfiltered ones, on one synthetic model."""
    from app.recsys import attributes, filter_expr
    from app.recsys.filtered_search import Allowed
    from app.recsys.search import search as exact_search

    config = IndexConfig(ef_construction=args.ef_construction or IndexConfig.ef_construction)
    # A built model is kept under --keep (keyed by its shape), so a second run skips the graph build.
    kept = Path(args.keep) / f"{n_items}x{args.dim}-u{args.users}-ef{config.ef_construction}" if args.keep else None
    started = time.perf_counter()
    if kept is not None and (kept / "index.json").exists():
        artifact = load_model(kept)
        index = load_index(kept, artifact.item_factors)
    else:
        artifact = synthetic_model(args.users, n_items, args.dim, args.seen, seed=0)
        index = build_index(artifact.item_factors, config, sample_queries=artifact.user_factors)
        if kept is not None:
            save_model(kept, artifact)
            index.save(kept)
    built = time.perf_counter() - started
    var = Path(tempfile.mkdtemp(prefix="unfold-bench-"))
    try:
        settings = Settings(var_dir=var)
        model_id = register(settings, artifact, index)
        model = serving.ModelCache(open_store(settings.resolved_artifact_root), 1 << 34).get(
            model_id, model_key(model_id)
        )
        rng = np.random.default_rng(3)
        buckets = rng.integers(0, 1000, n_items).astype(np.float64)
        table = attributes.AttributeTable(artifact.item_ids, {"bucket": attributes.numeric(buckets)})
        columns = table.aligned(artifact.item_ids)
        users = [f"u{u}" for u in rng.integers(0, args.users, args.queries)]
        rows = []
        for share in (1.0, *SELECTIVITIES):
            allowed, compile_ms = None, 0.0
            if share < 1:
                started = time.perf_counter()
                tree = filter_expr.parse(f"bucket < {share * 1000:g}")
                filter_expr.validate(tree, table.schema)
                allowed = Allowed(filter_expr.evaluate(tree, columns))
                compile_ms = (time.perf_counter() - started) * 1000
            serving.recommend_for_users(model, users[:20], 10, True, None, allowed)  # warm (gathers, lookups)
            times, recall = [], []
            for j, user in enumerate(users):
                start = time.perf_counter()
                [scored] = serving.recommend_for_users(model, [user], 10, True, None, allowed)
                times.append(time.perf_counter() - start)
                if j < 200:  # recall against an exact scan of the allowed items (seen ones excluded)
                    row = model.user_index[user]
                    seen = artifact.seen(row)
                    mask = np.ones(n_items, bool) if allowed is None else allowed.mask.copy()
                    mask[seen] = False
                    keep = np.flatnonzero(mask)
                    [(truth, _)] = exact_search(artifact.user_factors[row], artifact.item_factors[keep], 10)
                    got = {model.item_index[i] for i, _ in scored}
                    recall.append(len(got & set(keep[truth].tolist())) / max(1, truth.shape[0]))
                    assert len(scored) == min(10, keep.shape[0]), (share, len(scored))
            ms = np.array(times) * 1000
            rows.append(
                {
                    "items": n_items,
                    "index": index.kind,
                    "ef_construction": config.ef_construction,
                    "ef_search": index.config.ef_search or "",
                    "filter keeps": "all (no filter)" if share == 1 else f"{share:.1%}",
                    "allowed": n_items if allowed is None else allowed.count,
                    "compile ms": compile_ms,
                    "p50 ms": float(np.percentile(ms, 50)),
                    "p99 ms": float(np.percentile(ms, 99)),
                    "recall@10": float(np.mean(recall)),
                    "build or load s": built,
                }
            )
        return rows
    finally:
        shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogs", default="40000,1000000", help="comma-separated catalog sizes")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seen", type=int, default=50, help="seen items per user")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-workers", type=int, default=0, help="UNFOLD_API_WORKERS (0: the default)")
    parser.add_argument("--filters", action="store_true", help="in-process filtered latency only (no wrk)")
    parser.add_argument("--queries", type=int, default=2000, help="single-user queries per case (--filters)")
    parser.add_argument("--ef-construction", type=int, default=0, help="HNSW build quality (0: the default, 400)")
    parser.add_argument("--keep", default="", help="folder keeping built models between --filters runs")
    args = parser.parse_args()
    if args.filters:
        catalogs = [int(n) for n in (args.catalogs if args.catalogs != "40000,1000000" else "1000000").split(",")]
        rows = [row for n in catalogs for row in bench_filters(n, args)]
        print(f"{args.users:,} users, dim {args.dim}, {args.seen} seen per user, k=10 exclude_seen; {machine()}")
        print_table(rows, list(rows[0]))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")

    rows = [bench_catalog(int(n), args) for n in args.catalogs.split(",")]
    workers = args.api_workers or Settings().resolved_api_workers
    print(
        f"{args.users:,} users, dim {args.dim}, {args.seen} seen per user, k=10 exclude_seen; wrk {args.connections} "
        f"connections {args.seconds}s against one `unfold api` ({workers} processes); {machine()}"
    )
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
