"""Serving speed: in-process query latency (the floor) and HTTP throughput under wrk.

    .venv/bin/python bench/serving.py [--items 40000] [--users 50000] [--dim 64] [--seconds 20]

Builds a model artifact with clustered synthetic factors (shaped like trained embeddings),
registers it in a fresh embedded database, starts one `unfold api` process and drives it with
wrk at 32 connections: GET /v1/models/{id}/users/{u}/recommendations?k=10&exclude_seen=true for
random users. Prints req/s, p50, p99, errors and the HTTP overhead against the in-process p50.
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
from app.recsys.artifact import ModelArtifact, save_model
from app.services import serving
from app.storage import open_store

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


def register(settings: Settings, artifact: ModelArtifact) -> str:
    upgrade(settings.resolved_database_url)
    store = open_store(settings.resolved_artifact_root)
    staged = store.staging_dir()
    save_model(staged, artifact)
    store.publish_dir("models/mdl_bench", staged)
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
                index={"kind": "exact"},
                artifact_key="models/mdl_bench",
            )
        )
    return "mdl_bench"


def in_process(settings: Settings, model_id: str, n_users: int, queries: int) -> dict[str, float]:
    cache = serving.ModelCache(open_store(settings.resolved_artifact_root), 1 << 34)
    model = cache.get(model_id, f"models/{model_id}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seen", type=int, default=50, help="seen items per user")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")

    var = Path(tempfile.mkdtemp(prefix="unfold-bench-"))
    settings = Settings(var_dir=var)
    model_id = register(settings, synthetic_model(args.users, args.items, args.dim, args.seen, seed=0))
    floor = in_process(settings, model_id, args.users, 2000)

    env = {k: v for k, v in os.environ.items() if not k.startswith("UNFOLD_")}
    env |= {"UNFOLD_VAR_DIR": str(var), "UNFOLD_PORT": str(args.port)}
    api = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(120):
            try:
                if httpx.get(f"{base}/v1/models/{model_id}/users/u0/recommendations").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        script = var / "recs.lua"
        script.write_text(WRK_SCRIPT.replace("{n_users}", str(args.users)).replace("{model}", model_id))
        http = wrk(base, script, args.seconds, args.connections)
    finally:
        api.terminate()
        api.wait(timeout=30)
        shutil.rmtree(var, ignore_errors=True)

    print(
        f"{args.items:,} items, {args.users:,} users, dim {args.dim}, {args.seen} seen per user, "
        f"wrk {args.connections} connections {args.seconds}s; {machine()}"
    )
    print_table(
        [
            {"path": "in-process (numpy)", "p50 ms": floor["p50_ms"], "p99 ms": floor["p99_ms"]},
            {
                "path": "HTTP (one unfold api)",
                "req/s": http["req_s"],
                "p50 ms": http["p50_ms"],
                "p99 ms": http["p99_ms"],
                "errors": http["errors"],
            },
        ],
        ["path", "req/s", "p50 ms", "p99 ms", "errors"],
    )
    print(
        f"HTTP overhead (p50 HTTP / p50 in-process): {http['p50_ms'] / floor['p50_ms']:.1f}x; "
        f"batch of 10,000 users in-process: {floor['batch10k_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
