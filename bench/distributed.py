"""Sharded WALS on one host: 1 process (fit_wals) against 2 and 4 ranks (fit_sharded_wals over loopback gloo).

Synthetic planted data (--interactions in the training part, default 20M; another 20 % held out at random),
written once as the whole matrix and as per-rank shard files: the single process loads the whole matrix, a
rank only its shard file. Every run is a process of its own, and its peak RSS (VmHWM, interpreter and torch
included) is its own.
Reports seconds per iteration, peak RSS per process, bytes each rank hands to collectives per iteration
(and loopback bytes sent over the run as a check), recall@20 on sampled test users and the largest factor
difference from the single process.

    .venv/bin/python bench/distributed.py --interactions 20000000 --iterations 3 --out bench/results/distributed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, print_table, save_json  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): ru_maxrss would carry the parent's peak over fork and exec on Linux."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _planted(n_interactions: int, n_users: int, n_items: int, seed: int) -> tuple[Any, Any]:
    """Users in 50 communities pick 70 % of their items in their community, the rest by global popularity
    (both skewed: a Pareto draw over item ranks)."""
    from app.recsys.interactions import Interactions

    rng = np.random.default_rng(seed)
    groups = 50
    draws = int(n_interactions * 1.4)  # duplicates are dropped below
    users = rng.integers(0, n_users, draws)
    popular = np.minimum((rng.pareto(1.2, draws) * n_items / 50).astype(np.int64), n_items - 1)
    per_group = n_items // groups
    own = (users % groups) + groups * np.minimum((rng.pareto(1.2, draws) * per_group / 20).astype(np.int64),
                                                 per_group - 1)  # fmt: skip
    items = np.where(rng.random(draws) < 0.7, own, popular)
    del popular, own
    keys = np.unique(users * n_items + items)
    del users, items
    rng.shuffle(keys)
    keys = np.sort(keys[:n_interactions])
    test = rng.random(keys.shape[0]) < 0.2

    def build(part: np.ndarray) -> Interactions:
        u = part // n_items
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
        weights = rng.integers(1, 5, part.shape[0]).astype(np.float32)
        return Interactions(n_users, n_items, indptr, (part - u * n_items).astype(np.int32), weights)

    return build(keys[~test]), build(keys[test])


def _save_matrix(data: Any, path: Path) -> None:
    np.savez(path, allow_pickle=False, n=np.array([data.n_users, data.n_items]), indptr=data.indptr,
             indices=data.indices, weights=data.weights)  # fmt: skip


def _load_matrix(path: Path) -> Any:
    from app.recsys.interactions import Interactions

    with np.load(path, allow_pickle=False) as z:
        n_users, n_items = (int(v) for v in z["n"])
        return Interactions(n_users, n_items, z["indptr"], z["indices"], z["weights"])


def single(args: argparse.Namespace) -> None:
    """One process: load the whole train matrix, fit_wals, write factors and figures."""
    import torch

    from app.recsys.wals import WALSConfig, fit_wals

    torch.set_num_threads(args.threads)
    train = _load_matrix(Path(args.data))
    model = fit_wals(train, WALSConfig(**json.loads(args.config)))
    np.savez(args.out + ".npz", allow_pickle=False, U=model.user_factors, V=model.item_factors)
    seconds = model.history[-1]["seconds"] / len(model.history)
    Path(args.out).write_text(json.dumps({"seconds_per_iteration": seconds, "peak_rss_mb": peak_rss_mb()}))


def rank(args: argparse.Namespace) -> None:
    """One rank: load only its shard file, meet the others (rank 0 publishes its port in a file), fit."""
    import torch

    from app.recsys.sharded_wals import fit_sharded_wals, join, leave, open_rendezvous
    from app.recsys.wals import WALSConfig

    torch.set_num_threads(args.threads)
    with np.load(args.data, allow_pickle=False) as z:
        _, rank, world, _ = (int(v) for v in z["header"])  # the header only: the fit loads the rest
    address = Path(args.address)
    if rank == 0:
        store = open_rendezvous("127.0.0.1", 0, 0, world, 300.0)
        address.with_suffix(".tmp").write_text(str(store.port))
        address.with_suffix(".tmp").rename(address)
    else:
        while not address.exists():
            time.sleep(0.1)
        store = open_rendezvous("127.0.0.1", int(address.read_text()), rank, world, 300.0)
    join(store, rank, world, 300.0)
    started = time.perf_counter()
    fit = fit_sharded_wals(args.data, WALSConfig(**json.loads(args.config)))
    seconds = (time.perf_counter() - started) / max(fit.iterations, 1)
    leave()
    if fit.model is not None:
        np.savez(args.out + ".npz", allow_pickle=False, U=fit.model.user_factors, V=fit.model.item_factors)
        seconds = fit.model.history[-1]["seconds"] / len(fit.model.history)
    figures = {"seconds_per_iteration": seconds, "peak_rss_mb": peak_rss_mb(),
               "bytes_per_iteration": fit.bytes_sent / max(fit.iterations, 1)}  # fmt: skip
    Path(args.out).write_text(json.dumps(figures))


def _loopback_sent() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, fields = line.partition(":")
        if name.strip() == "lo":
            return int(fields.split()[8])
    return 0


def _spawn(mode: str, data: Path, out: Path, config: dict[str, Any], threads: int, address: Path | None = None):
    command = [sys.executable, __file__, mode, "--data", str(data), "--out", str(out), "--config",
               json.dumps(config), "--threads", str(threads)]  # fmt: skip
    if address is not None:
        command += ["--address", str(address)]
    return subprocess.Popen(command)


def main(args: argparse.Namespace) -> None:
    from app.recsys.metrics import ranking_metrics
    from app.recsys.sharded_wals import make_shards, save_shard
    from app.recsys.wals import WALSConfig

    config = dataclasses.asdict(WALSConfig(dim=args.dim, iterations=args.iterations, l2=0.05,
                                           l2_scaling="frequency", device="cpu"))  # fmt: skip
    total = args.interactions * 5 // 4  # the training part is --interactions
    n_users, n_items = total // 60, total // 300
    work = Path(args.data_dir or tempfile.mkdtemp(prefix="unfold-distributed-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if (work / "test.npz").exists():  # --data-dir of an earlier run with the same arguments
        train, test = _load_matrix(work / "train.npz"), _load_matrix(work / "test.npz")
    else:
        train, test = _planted(total, n_users, n_items, args.seed)
        _save_matrix(train, work / "train.npz")
        _save_matrix(test, work / "test.npz")
    for world in args.ranks:
        if world > 1 and not (work / f"shard-{world}-{world - 1}.npz").exists():
            for shard in make_shards(train, world):
                save_shard(shard, work / f"shard-{world}-{shard.rank}.npz")
    print(f"data: {n_users} users, {n_items} items, {train.nnz} train / {test.nnz} test interactions "
          f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for world in args.ranks:
        sent_before = _loopback_sent()
        if world == 1:
            processes = [_spawn("single", work / "train.npz", work / "out-1-0", config, args.threads)]
        else:
            address = work / f"address-{world}"
            address.unlink(missing_ok=True)  # a port from an earlier run in the same --data-dir
            processes = [
                _spawn("rank", work / f"shard-{world}-{r}.npz", work / f"out-{world}-{r}", config, 1, address)
                for r in range(world)
            ]
        for process in processes:
            if process.wait() != 0:
                sys.exit(f"{world} ranks: a process failed")
        loopback = (_loopback_sent() - sent_before) / world / args.iterations if world > 1 else 0.0
        figures = [json.loads((work / f"out-{world}-{r}").read_text()) for r in range(world)]
        with np.load(work / f"out-{world}-0.npz", allow_pickle=False) as z:
            U, V = z["U"], z["V"]
        recall = ranking_metrics(U, V, train, test, (20,), max_users=args.eval_users, seed=0)["recall@20"]
        if reference is None:
            reference = np.concatenate([U, V])
        row = {
            "ranks": world,
            "s/iteration": figures[0]["seconds_per_iteration"],
            "peak RSS MB (max rank)": max(f["peak_rss_mb"] for f in figures),
            "peak RSS MB per rank": " ".join(f"{f['peak_rss_mb']:.0f}" for f in figures),
            "MB sent/rank/iteration (mean)": np.mean([f.get("bytes_per_iteration", 0.0) for f in figures]) / 2**20,
            "MB sent/rank/iteration (max)": max(f.get("bytes_per_iteration", 0.0) for f in figures) / 2**20,
            "loopback MB/rank/iteration": loopback / 2**20,
            "recall@20": recall,
            "max |Δfactor|": float(np.abs(np.concatenate([U, V]) - reference).max()),
        }
        row["RSS / single"] = row["peak RSS MB (max rank)"] / (rows[0] if rows else row)["peak RSS MB (max rank)"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, list(rows[0]))
    if not args.data_dir:
        shutil.rmtree(work)
    if args.out:
        meta = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "command": " ".join(sys.argv), "config": config, "users": n_users, "items": n_items,
                "train": train.nnz, "test": test.nnz}  # fmt: skip
        save_json(Path(args.out), {"meta": meta, "rows": rows})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "single", "rank"))
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=2, help="torch/numba threads of the single process")
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--data-dir", default="", help="keep the data and shards here and reuse them next time")
    parser.add_argument("--data", default="")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--address", default="")
    parsed = parser.parse_args()
    {"bench": main, "single": single, "rank": rank}[parsed.mode](parsed)
