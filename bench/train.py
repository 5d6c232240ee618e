"""Training speed and quality beside the `implicit` library, one process run: WALS/ALS and SGD/BPR.

    make bench-extras        # implicit + threadpoolctl, benchmark extras only
    .venv/bin/python bench/train.py [--datasets ml1m lastfm synth10m] [--dims 64 128] [--iterations 15]

Datasets (each with one fixed split shared by every model):
  ml1m      ml-1m-implicit, train+valid → test (the protocol of ../shared/data/README.md)
  lastfm    hetrec-lastfm play counts, a random 80/20 split (the service's own `random` split, seed 0)
  synth10m  planted communities: 200,000 users, 50,000 items in 100 groups, Zipf popularity inside each
            group, 20 % of interactions outside the user's group, 50 per user on average (10M in all),
            random 80/20 split; metrics on a sample of 20,000 test users

Models, at the same dim and number of iterations:
  unfold-wals    the service's default WALS spec for this data (what `{"algorithm": "wals"}` trains)
  unfold-wals-single  the same with one λ for every row (`"l2_scaling": "none"`: λ 100, w0 1), the default before
  implicit-als   implicit's ALS with its defaults (CG solver), the time reference
  implicit-als-tuned  implicit's ALS with alpha 10, regularization 100 (the quality reference)
  unfold-sgd     the service's default SGD recipe (--sgd-epochs epochs), on the compiled CPU path
  unfold-sgd-torch  the same recipe on the torch path (what CPU training used before the compiled loops)
  implicit-bpr   implicit's BPR (lr 0.01, reg 0.01, 100 iterations)
  lightfm-warp   LightFM's WARP (lr 0.05, 30 epochs, 2 threads: bench/quality.py's settings), item bias as
                 an extra dimension

Every run is a fresh subprocess, so its peak RSS is its own. Unfold's WALS and SGD first fit a tiny planted set
for one iteration so their compiled loops are loaded ("warm-up s", paid once per worker process); the baseline RSS
is taken after that (an idle worker with its code loaded) and before the data is read. "data MB" is the
interaction CSR plus the factors, the quantity the memory target compares against. implicit gets one BLAS
thread (its advice; it parallelises over rows with its own threads); Unfold's threads = cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, machine, ml1m_implicit, print_table, require_data, save_json

from app.recsys.sgd_config import RECIPE_EPOCHS

CACHE = REPO / "bench" / "results" / "cache"
SYNTH_EVAL_USERS = 20_000


def _lastfm() -> tuple[Any, Any]:
    from app.recsys.interactions import Interactions
    from app.recsys.split import split

    raw = np.loadtxt(require_data("hetrec-lastfm") / "user_artists.dat", skiprows=1, dtype=np.int64)
    users, u = np.unique(raw[:, 0], return_inverse=True)
    items, i = np.unique(raw[:, 1], return_inverse=True)
    full = Interactions.from_coo(u, i, raw[:, 2].astype(np.float32), n_users=len(users), n_items=len(items))
    return split(full, "random", 0.2, seed=0)


def _synth10m() -> tuple[Any, Any]:
    from app.recsys.interactions import Interactions
    from app.recsys.split import split
    from app.recsys.synth import PlantedConfig, planted_communities

    path = CACHE / "synth10m.npz"
    if not path.exists():
        config = PlantedConfig(
            n_groups=100,
            users_per_group=2000,
            items_per_group=500,
            interactions_per_user=50,
            popularity_exponent=1.0,
            noise=0.2,
            seed=0,
        )
        full = planted_communities(config).interactions
        train, test = split(full, "random", 0.2, seed=0)
        CACHE.mkdir(parents=True, exist_ok=True)
        arrays = {
            f"{name}_{field}": getattr(part, field)
            for name, part in (("train", train), ("test", test))
            for field in ("indptr", "indices", "weights")
        }
        np.savez(path, allow_pickle=False, n_users=train.n_users, n_items=train.n_items, **arrays)
    with np.load(path, allow_pickle=False) as z:
        shape = {"n_users": int(z["n_users"]), "n_items": int(z["n_items"])}
        parts = [
            Interactions(indptr=z[f"{p}_indptr"], indices=z[f"{p}_indices"], weights=z[f"{p}_weights"], **shape)
            for p in ("train", "test")
        ]
    return parts[0], parts[1]


DATASETS = {"ml1m": ml1m_implicit, "lastfm": _lastfm, "synth10m": _synth10m}
SGD_MODELS = ("unfold-sgd", "unfold-sgd-torch", "implicit-bpr", "lightfm-warp")
MAX_EVAL_USERS = {"synth10m": SYNTH_EVAL_USERS}


def _fit(model: str, train: Any, dim: int, iterations: int, sgd_epochs: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Train one model; returns (user factors, item factors, steps run)."""
    if model.startswith("unfold-wals"):
        from app.recsys.wals import fit_wals
        from app.services.algorithms import wals_config
        from app.spec import TrainingSpec

        wals: dict[str, Any] = {"iterations": iterations}
        if model == "unfold-wals-single":
            wals["l2_scaling"] = "none"
        config = wals_config(TrainingSpec(dataset_id="bench", dim=dim, wals=wals), train)
        m = fit_wals(train, config)
        return m.user_factors, m.item_factors, config.iterations
    if model.startswith("unfold-sgd"):
        import torch

        from app.recsys.sgd import _fit_sgd, fit_sgd
        from app.recsys.sgd_config import sgd_config_from_spec
        from app.spec import SGDSpec

        spec = SGDSpec(epochs=sgd_epochs).model_dump()
        config = sgd_config_from_spec(spec, dim=dim, seed=0)
        if model == "unfold-sgd-torch":
            # As fit_sgd runs it: torch on one thread (the other cores go to the compiled path's Hogwild).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                m = _fit_sgd(train, config, None, None, engine="torch", threads=threads)
            finally:
                torch.set_num_threads(threads)
        else:
            m = fit_sgd(train, config)
        return m.user_factors, m.item_factors, sgd_epochs
    if model == "lightfm-warp":
        from lightfm import LightFM

        warp = LightFM(no_components=dim, loss="warp", learning_rate=0.05, random_state=0)
        warp.fit(train.to_scipy().tocoo(), epochs=30, num_threads=2)
        # Score = u·v + item bias: carry the bias as an extra dimension so one dot product ranks.
        users = np.hstack([warp.user_embeddings, np.ones((train.n_users, 1), np.float32)])
        items = np.hstack([warp.item_embeddings, warp.item_biases[:, None]])
        return users, items, 30
    from threadpoolctl import threadpool_limits

    matrix = train.to_scipy().astype(np.float32)
    with threadpool_limits(1, "blas"):
        if model.startswith("implicit-als"):
            from implicit.als import AlternatingLeastSquares

            tuned = {"alpha": 10.0, "regularization": 100.0} if model == "implicit-als-tuned" else {}
            als = AlternatingLeastSquares(
                factors=dim, iterations=iterations, random_state=0, calculate_training_loss=False, **tuned
            )
            als.fit(matrix, show_progress=False)
            return np.asarray(als.user_factors), np.asarray(als.item_factors), iterations
        from implicit.bpr import BayesianPersonalizedRanking

        bpr = BayesianPersonalizedRanking(factors=dim, learning_rate=0.01, regularization=0.01, random_state=0)
        bpr.fit(matrix, show_progress=False)
        # implicit's BPR keeps an item bias in the last column (user column fixed at 1): a plain dot scores it.
        return np.asarray(bpr.user_factors), np.asarray(bpr.item_factors), bpr.iterations


def _run(task: dict[str, Any], out: Any) -> None:
    """One (dataset, model, dim) in a fresh process; sends back its row."""
    from app.recsys.device import set_threads
    from app.recsys.metrics import ranking_metrics

    set_threads(None)
    import torch  # noqa: F401  (its import is part of every worker's baseline, not of the data)

    warmup = 0.0
    if task["model"].startswith(("unfold-wals", "unfold-sgd")):
        # The compiled loops load (or compile) once per process; a worker pays it on its first job only, so
        # it is part of the idle worker's baseline like torch, not of the training's memory.
        from app.recsys.synth import PlantedConfig, planted_communities

        started = time.perf_counter()
        tiny = planted_communities(
            PlantedConfig(n_groups=2, users_per_group=25, items_per_group=20, interactions_per_user=5, seed=0)
        )
        _fit(task["model"], tiny.interactions, task["dim"], 1, 1)
        warmup = time.perf_counter() - started
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    train, test = DATASETS[task["dataset"]]()
    start = time.perf_counter()
    users, items, steps = _fit(task["model"], train, task["dim"], task["iterations"], task["sgd_epochs"])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    csr = train.indptr.nbytes + train.indices.nbytes + train.weights.nbytes
    data_mb = (csr + users.astype(np.float32).nbytes + items.astype(np.float32).nbytes) / 2**20
    metrics = ranking_metrics(
        np.ascontiguousarray(users, dtype=np.float32),
        np.ascontiguousarray(items, dtype=np.float32),
        train,
        test,
        (20,),
        max_users=MAX_EVAL_USERS.get(task["dataset"]),
    )
    out.send(
        {
            **task,
            **metrics,
            "s/iter": seconds / steps,
            "total s": seconds,
            "peak RSS MB": peak,
            "baseline RSS MB": baseline,
            "warm-up s": warmup,
            "data MB": data_mb,
            "nnz": train.nnz,
        }
    )


def run_isolated(task: dict[str, Any]) -> dict[str, Any] | None:
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run, args=(task, send))
    proc.start()
    send.close()
    try:
        row: dict[str, Any] = receive.recv()
    except EOFError:
        row = {}
    proc.join()
    if proc.exitcode != 0 or not row:
        print(f"  {task}: failed (exit {proc.exitcode})", flush=True)
        return None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--dims", nargs="+", type=int, default=[64, 128])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["unfold-wals", "implicit-als", "implicit-als-tuned", "unfold-sgd", "implicit-bpr"],
    )
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--sgd-epochs", type=int, default=RECIPE_EPOCHS, help="default: the recipe's")
    parser.add_argument("--sgd-dims", nargs="+", type=int, default=[64], help="dims for the SGD/BPR pair")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train.json")
    args = parser.parse_args()

    rows = []
    for dataset in args.datasets:
        for dim in args.dims:
            for model in args.models:
                if model in SGD_MODELS and dim not in args.sgd_dims:
                    continue
                task = {
                    "dataset": dataset,
                    "model": model,
                    "dim": dim,
                    "iterations": args.iterations,
                    "sgd_epochs": args.sgd_epochs,
                }
                row = run_isolated(task)
                if row is None:
                    continue
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
                rows.append(row)
    # Time ratios against the peer with the same role, dataset and dim.
    # SGD's peer is LightFM's WARP (the target: at most 2x its time), implicit's BPR without it.
    sgd_peer = "lightfm-warp" if "lightfm-warp" in args.models else "implicit-bpr"
    peer_of = {
        "unfold-wals": "implicit-als",
        "unfold-wals-single": "implicit-als",
        "unfold-sgd": sgd_peer,
        "unfold-sgd-torch": sgd_peer,
    }
    for row in rows:
        peer = next(
            (
                p
                for p in rows
                if p["model"] == peer_of.get(row["model"]) and p["dataset"] == row["dataset"] and p["dim"] == row["dim"]
            ),
            None,
        )
        row["time ratio"] = row["total s"] / peer["total s"] if peer else ""
        # Memory above an idle process with torch imported (so including the loaded train+test data).
        row["RSS over baseline / data"] = (row["peak RSS MB"] - row["baseline RSS MB"]) / row["data MB"]
    print(f"\n{machine()}; {args.iterations} iterations (ALS), {args.sgd_epochs} epochs (Unfold SGD)")
    print_table(
        rows,
        [
            "dataset",
            "model",
            "dim",
            "s/iter",
            "total s",
            "time ratio",
            "recall@20",
            "ndcg@20",
            "peak RSS MB",
            "RSS over baseline / data",
        ],
    )
    save_json(args.out, rows)


if __name__ == "__main__":
    main()
