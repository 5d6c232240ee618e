"""Benchmark app.recsys.sgd.fit_sgd: examples/s and seconds/epoch of each variant on ml-1m-implicit.

    .venv/bin/python bench/sgd_speed.py --epochs 3 --variants minibatch sgd --threads 2 --repeats 3 --implicit
    .venv/bin/python bench/sgd_speed.py --variants minibatch_sgd --evaluate --config '{"loss": "softmax"}'
    .venv/bin/python bench/sgd_speed.py --variants minibatch_sgd --engine torch   # the torch path on the CPU

--engine picks fit_sgd's engine (compiled: the numba loops of sgd_kernel.py, the CPU default; torch: the
mini-batch path CUDA uses; numpy: variant sgd by level scheduling); --threads is what fit_sgd sees as torch's
thread count, i.e. the compiled path's Hogwild threads.

Trains on train.txt (train.txt + valid.txt with --evaluate, which then reports recall@20/ndcg@20 on
test.txt under the protocol of ../shared/data/README.md). The first epoch includes one-off warm-up, so
seconds/epoch is the median over the other epochs. Two counts of examples, side by side:

  pos/s      positive examples (interactions) per second, each with its per_positive negatives: what one
             epoch over the data is, and what the project's tables counted before
  triples/s  (user, positive, negative) triples per second = pos/s × per_positive: what implicit's BPR
             counts (one sampled negative per positive, nnz of them per epoch); with no private negatives
             (none, in_batch) it is pos/s

each per wall-clock second and per CPU second of the process (time.process_time: all its threads; on a
shared machine the wall figure depends on the other jobs, the CPU one much less). --implicit adds
implicit's BPR (one BLAS thread via threadpoolctl, --threads threads of its own) on the same data and dim.
--repeats runs every model that many times, interleaved, so that each row's load is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.recsys.interactions import Interactions  # noqa: E402
from app.recsys.metrics import ranking_metrics  # noqa: E402
from app.recsys.sampling import Negatives, NegativeSampler  # noqa: E402
from app.recsys.sgd import (  # noqa: E402
    ENGINES,
    _fit_sgd,
    _numpy_group,
    _NumpyOptimizer,
    _torch_update,
    _TorchOptimizer,
    engine_for,
    fit_sgd,
)
from app.recsys.sgd_config import VARIANTS, NegativeConfig, SGDConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ml-1m-implicit"


def read_adjacency(paths: list[Path], n_users: int | None = None, n_items: int | None = None) -> Interactions:
    """Read `user item item …` lines (0-based ids) from one or more files into one matrix."""
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for path in paths:
        for line in path.read_text().splitlines():
            ids = np.array(line.split(), dtype=np.int64)
            if ids.size > 1:
                users.append(np.full(ids.size - 1, ids[0]))
                items.append(ids[1:])
    return Interactions.from_coo(np.concatenate(users), np.concatenate(items), n_users=n_users, n_items=n_items)


def load(data: Path, evaluate: bool) -> tuple[Interactions, Interactions | None]:
    """Return (train, test): train.txt alone, or train+valid and test.txt when evaluating."""
    files = [data / "train.txt", data / "valid.txt", data / "test.txt"]
    whole = read_adjacency(files)  # only to fix a common shape
    shape = {"n_users": whole.n_users, "n_items": whole.n_items}
    if not evaluate:
        return read_adjacency(files[:1], **shape), None
    return read_adjacency(files[:2], **shape), read_adjacency(files[2:], **shape)


def make_config(args: argparse.Namespace, variant: str) -> SGDConfig:
    """Build the SGDConfig of one run from the flags and the --config JSON."""
    fields: dict[str, Any] = {
        "dim": args.dim,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "loss": args.loss,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "device": args.device,
    }
    negatives: dict[str, Any] = {"strategy": args.strategy, "per_positive": args.per_positive}
    extra = json.loads(args.config)
    negatives.update(extra.pop("negatives", {}))
    fields.update(extra)
    fields["variant"] = variant
    return SGDConfig(negatives=NegativeConfig(**negatives), **fields)


def fit_on(train: Interactions, config: SGDConfig, engine: str) -> Any:
    """fit_sgd on a chosen engine, with fit_sgd's thread handling (torch on one thread, Hogwild on the rest)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_sgd(train, config, None, None, engine=engine, threads=threads)
    finally:
        torch.set_num_threads(threads)


def fit_timed(train: Interactions, config: SGDConfig, engine: str | None) -> tuple[Any, float, float]:
    """fit_sgd (or fit_on) with wall and CPU seconds per epoch: medians over the epochs after the first."""
    cpu: list[float] = [time.process_time()]

    def callback(step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> None:
        cpu.append(time.process_time())

    if engine is None:
        model = fit_sgd(train, config, callback)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model = _fit_sgd(train, config, callback, None, engine=engine, threads=threads)
        finally:
            torch.set_num_threads(threads)
    walls = np.diff([0.0, *[h["seconds"] for h in model.history]]).tolist()
    cpus = np.diff(cpu).tolist()
    later = slice(1, None) if len(walls) > 1 else slice(None)
    return model, statistics.median(walls[later]), statistics.median(cpus[later])


def implicit_bpr(train: Interactions, args: argparse.Namespace) -> tuple[float, float]:
    """implicit's BPR (lr 0.01, reg 0.01) on the same data: wall and CPU seconds per epoch over --epochs + 1."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    matrix = train.to_scipy().astype(np.float32).tocsr()
    threads = args.threads or torch.get_num_threads()
    epochs = max(args.epochs, 2)
    with threadpool_limits(1, "blas"):
        warm = BayesianPersonalizedRanking(factors=args.dim, iterations=1, num_threads=threads, random_state=0)
        warm.fit(matrix, show_progress=False)
        bpr = BayesianPersonalizedRanking(
            factors=args.dim, learning_rate=0.01, regularization=0.01, iterations=epochs, num_threads=threads,
            random_state=0,
        )  # fmt: skip
        cpu, wall = time.process_time(), time.perf_counter()
        bpr.fit(matrix, show_progress=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return wall / epochs, cpu / epochs


def rate_line(rep: int, name: str, batch: int, wall: float, cpu: float, nnz: int, triples: int) -> str:
    """One row: seconds per epoch (wall, CPU) and both counts per wall and per CPU second."""
    return (
        f"{rep:>3} {name:<24}{batch:>6}{wall:>9.3f}{cpu:>9.3f}{nnz / wall:>11,.0f}{nnz / cpu:>11,.0f}"
        f"{nnz * triples / wall:>11,.0f}{nnz * triples / cpu:>11,.0f}"
    )


def reference_rates(train: Interactions, config: SGDConfig, n: int) -> tuple[float, float]:
    """Examples/s of one-example-per-call updates in numpy and in torch (what variant "sgd" avoids)."""
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(train.nnz, generator=generator)[:n]
    users = torch.from_numpy(train.row_users())[order]
    items = torch.from_numpy(train.indices.astype(np.int64))[order]
    negatives = NegativeSampler(config.negatives, train).sample(users, items, generator)
    rows = torch.cat([(users + train.n_items).unsqueeze(1), items.unsqueeze(1), negatives.items], 1)
    rows_np = rows.numpy()
    table = (np.random.default_rng(0).standard_normal((train.n_items + train.n_users, config.dim)) * 0.1).astype(
        np.float32
    )
    optimizer = _NumpyOptimizer(config.optimizer, config.learning_rate, table)
    start = time.perf_counter()
    for e in range(n):
        _numpy_group(table, optimizer, rows_np[e : e + 1], None, config, None, True)
    numpy_rate = n / (time.perf_counter() - start)
    table_t = torch.from_numpy(table)
    optimizer_t = _TorchOptimizer(config.optimizer, config.learning_rate, table_t)
    empty, no_valid = torch.zeros(0, dtype=torch.int64), torch.zeros(1, 0, dtype=torch.bool)
    m = max(1, n // 10)  # torch is slow enough that a tenth of the examples gives a stable rate
    start = time.perf_counter()
    for e in range(m):
        example = rows[e : e + 1]
        batch = Negatives(example[:, 2:], empty, no_valid)
        _torch_update(table_t, optimizer_t, train.n_items, users[e : e + 1], items[e : e + 1], batch, config, None)
    torch_rate = m / (time.perf_counter() - start)
    return numpy_rate, torch_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--optimizer", default="adagrad")
    parser.add_argument("--loss", default="bce")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--strategy", default="uniform")
    parser.add_argument("--per-positive", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--engine", choices=ENGINES, default=None, help="fit_sgd's engine (default: its own choice)")
    parser.add_argument("--config", default="{}", help="SGDConfig fields as JSON; override the flags")
    parser.add_argument("--evaluate", action="store_true", help="train on train+valid, report test metrics")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repetitions of every model")
    parser.add_argument("--implicit", action="store_true", help="time implicit's BPR on the same data too")
    parser.add_argument(
        "--reference",
        type=int,
        default=20000,
        help="time this many one-by-one updates as a reference (0: skip)",
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"dataset not found at {args.data}; pass --data (it lives in ../shared/data, not the repo)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train, test = load(args.data, args.evaluate)
    print(
        f"{train.n_users} users, {train.n_items} items, {train.nnz} training examples, "
        f"torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'rep':>3} {'model':<24}{'batch':>6}{'s/epoch':>9}{'cpu s/ep':>9}"
        f"{'pos/s':>11}{'pos/cpu-s':>11}{'triples/s':>11}{'tri/cpu-s':>11}{'loss':>8}"
    )
    print(header + ("" if test is None else f"{'recall@20':>11}{'ndcg@20':>9}"))
    for rep in range(args.repeats):
        for variant in args.variants:
            config = make_config(args, variant)
            timed = fit_timed(train, config, args.engine)
            model, per_epoch, cpu_per_epoch = timed
            engine = args.engine or engine_for(config)
            batch = 1 if variant == "sgd" else config.batch_size
            triples = max(config.negatives.n_private, 1)
            line = rate_line(rep, f"{variant} ({engine})", batch, per_epoch, cpu_per_epoch, train.nnz, triples)
            line += f"{model.history[-1]['loss']:>8.4f}"
            if test is not None:
                m = ranking_metrics(model.user_factors, model.item_factors, train, test, ks=(20,))
                line += f"{m['recall@20']:>11.4f}{m['ndcg@20']:>9.4f}"
            print(line, flush=True)
        if args.implicit:
            per_epoch, cpu_per_epoch = implicit_bpr(train, args)
            print(rate_line(rep, "implicit-bpr", 1, per_epoch, cpu_per_epoch, train.nnz, 1), flush=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    strategy = json.loads(args.config).get("negatives", {}).get("strategy", args.strategy)
    if args.reference > 0 and strategy in ("none", "uniform", "popularity"):
        config = make_config(args, "sgd")
        numpy_rate, torch_rate = reference_rates(train, config, args.reference)
        print(f"{'reference: one example per call, numpy':<44}{numpy_rate:>12,.0f} examples/s")
        print(f"{'reference: one example per call, torch':<44}{torch_rate:>12,.0f} examples/s")
    print("config:", json.dumps(asdict(make_config(args, args.variants[-1]))))


if __name__ == "__main__":
    main()
