"""Warm-started retraining against a fit from scratch, on ml-1m-implicit (issue 19, docs/events.md).

    nice .venv/bin/python bench/warm_start.py [--dim 64] [--iterations 15] [--event-fraction 0.1]

The protocol: ml-1m-implicit's `train` part is the data, its `valid` part the validation set that no model
here ever trains on. A random 10 % of each user's training interactions (seeded) are held back as "events";
the base model is WALS with the default settings on the other 90 %. Then, on all of `train` (90 % + events):
  scratch  the same fit from a fresh random start
  warm     the same fit started from the base model's factors (users and items the base model had no
           interaction for start from the fresh draw, as in the service: app.services.warm_fitting)
Both record validation recall@20 after every iteration. The target is scratch's recall@20 after all its
iterations; the figure is the first iteration at which each run is within 0.5 % of it (>= 0.995 × target).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import REPO, machine, ml1m_validation, print_table, save_json

from app.recsys.base import TrainingState
from app.recsys.interactions import Interactions
from app.recsys.metrics import ranking_metrics
from app.recsys.wals import fit_wals, init_factors
from app.recsys.warm_start import warm_factors
from app.services.algorithms import wals_config
from app.spec import TrainingSpec

TOLERANCE = 0.005


def hold_back(data: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    """(base, events): a random `fraction` of each user's interactions as events (a user keeps at least one)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(data.n_users), np.diff(data.indptr))
    event = np.zeros(data.nnz, dtype=bool)
    for u in range(data.n_users):
        lo, hi = data.indptr[u], data.indptr[u + 1]
        n = int(round((hi - lo) * fraction))
        if hi - lo > 1 and n:
            event[lo + rng.choice(hi - lo, size=min(n, hi - lo - 1), replace=False)] = True
    shape = {"n_users": data.n_users, "n_items": data.n_items}
    base = Interactions.from_coo(users[~event], data.indices[~event], data.weights[~event], **shape)
    events = Interactions.from_coo(users[event], data.indices[event], data.weights[event], **shape)
    return base, events


def curve(history: list[dict[str, Any]]) -> list[float]:
    return [float(h["metrics"]["recall@20"]) for h in history]


def reached(recalls: list[float], target: float) -> int | None:
    """The first iteration (1-based) within TOLERANCE of the target, None if never."""
    for i, r in enumerate(recalls, start=1):
        if r >= (1 - TOLERANCE) * target:
            return i
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=None, help="default: the service's WALS default")
    parser.add_argument("--event-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "warm_start.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    full, valid = ml1m_validation()
    base, events = hold_back(full, args.event_fraction, args.seed)
    spec = TrainingSpec.model_validate(
        {"dataset_id": "ml-1m", "dim": args.dim, "seed": args.seed, "search": {"mode": "off"}}
    )
    config = wals_config(spec, full)
    if args.iterations is not None:
        from dataclasses import replace

        config = replace(config, iterations=args.iterations)

    def evaluator(U: np.ndarray, V: np.ndarray) -> dict[str, float]:
        return ranking_metrics(U, V, full, valid, (20,))

    base_model = fit_wals(base, config)
    scratch = fit_wals(full, config, evaluator=evaluator)
    # The warm start as the service builds it: the fresh draw, with the base model's rows where it knew the id.
    generator = torch.Generator().manual_seed(config.seed)
    V0 = init_factors(full.n_items, config, generator).numpy()
    U0 = init_factors(full.n_users, config, generator).numpy()
    known_users = np.flatnonzero(base.user_counts() > 0)
    known_items = np.flatnonzero(base.item_counts() > 0)
    ids_u, ids_i = np.arange(full.n_users).astype(str), np.arange(full.n_items).astype(str)
    U, n_u = warm_factors(U0, ids_u, ids_u[known_users], base_model.user_factors[known_users])
    V, n_i = warm_factors(V0, ids_i, ids_i[known_items], base_model.item_factors[known_items])
    state = TrainingState("wals", 0, {"user_factors": U, "item_factors": V}, {"history": [], "elapsed": 0.0})
    warm = fit_wals(full, config, evaluator=evaluator, resume=state)

    scratch_curve, warm_curve = curve(scratch.history), curve(warm.history)
    target = scratch_curve[-1]
    scratch_at, warm_at = reached(scratch_curve, target), reached(warm_curve, target)
    seconds = {name: m.history[-1]["seconds"] / len(m.history) for name, m in (("scratch", scratch), ("warm", warm))}
    rows = [
        {"run": "scratch", "iterations to target": scratch_at, "recall@20 at 1": f"{scratch_curve[0]:.4f}",
         "final recall@20": f"{scratch_curve[-1]:.4f}", "s/iteration": f"{seconds['scratch']:.2f}"},
        {"run": "warm", "iterations to target": warm_at, "recall@20 at 1": f"{warm_curve[0]:.4f}",
         "final recall@20": f"{warm_curve[-1]:.4f}", "s/iteration": f"{seconds['warm']:.2f}"},
    ]  # fmt: skip
    print(f"ml-1m-implicit train ({full.nnz} interactions; {events.nnz} held back as events), valid to score")
    print(f"target: scratch recall@20 after {config.iterations} iterations = {target:.4f}, within {TOLERANCE:.1%}")
    print(f"warm start knew {n_u} of {full.n_users} users and {n_i} of {full.n_items} items")
    print_table(rows, list(rows[0]))
    save_json(
        args.out,
        {
            "machine": machine(),
            "dim": args.dim,
            "iterations": config.iterations,
            "event_fraction": args.event_fraction,
            "n_events": events.nnz,
            "target_recall@20": target,
            "tolerance": TOLERANCE,
            "scratch": {"curve": scratch_curve, "iterations_to_target": scratch_at},
            "warm": {"curve": warm_curve, "iterations_to_target": warm_at},
            "known": {"users": n_u, "items": n_i},
        },
    )


if __name__ == "__main__":
    main()
