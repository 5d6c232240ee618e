"""Do Unfold's defaults hold on data nobody tuned them for? Six datasets, one run, against a tuned peer.

    make bench-extras        # implicit + threadpoolctl, benchmark extras only
    .venv/bin/python bench/generalise.py [--datasets ml100k mlsmall lastfm ml1m yelp amazon] [--dims 64 128]

For every dataset (bench/shared_sets.py: its split, test never seen while choosing) and dim:
  unfold-default   what `{"algorithm": "wals"}` trains: the settings search (app/recsys/autotune.py) on a
                   per-user validation split of the training data, then the final model on all of it
  unfold-fixed     `"search": {"mode": "off"}`: the fixed defaults, 15 iterations (the budget's unit)
  implicit-tuned   implicit's ALS (15 iterations) tuned on the same kind of validation split over
                   α ∈ {1, 3, 10, 40, 100} × regularization ∈ {0.1, 1, 10, 100}, the best refit on the training data
Each is scored on test (recall@20, every test user) and timed: "default / fixed" is the whole default job's
time over one fixed fit (medians of up to 3 interleaved runs), the ratio the budget (3 by default)
bounds; "of implicit" is recall over the tuned
peer's. implicit's grid is scored on at most 3000 validation users (its tuning time is reported, not compared).
--with-sgd adds the default SGD job (its own search) beside implicit's BPR (defaults, 100 epochs);
--skip-wals runs only that side.

Which data informed the search space (app/recsys/wals_defaults.py): ml1m, lastfm and yelp validation splits;
amazon, ml100k and mlsmall were kept out, as checks that the choice carries over.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, machine, print_table, save_json
from shared_sets import DATASETS

from app.recsys.autotune import AutotuneConfig, autotune
from app.recsys.device import set_threads
from app.recsys.interactions import Interactions
from app.recsys.metrics import ranking_metrics
from app.recsys.split import holdout_per_user
from app.recsys.synth import PlantedConfig, planted_communities
from app.services.algorithms import chosen_spec, plan_for, search_space
from app.spec import TrainingSpec

ALPHAS = (1.0, 3.0, 10.0, 40.0, 100.0)
REGS = (0.1, 1.0, 10.0, 100.0)
TUNING_USERS = 3000
REPEATS = 3
REPEAT_SECONDS = 90.0


def _recall(
    users: np.ndarray, items: np.ndarray, train: Interactions, test: Interactions, max_users: int | None = None
) -> float:
    U = np.ascontiguousarray(users, dtype=np.float32)
    V = np.ascontiguousarray(items, dtype=np.float32)
    return ranking_metrics(U, V, train, test, (20,), max_users=max_users)["recall@20"]


def unfold_default(train: Interactions, dim: int) -> tuple[Any, dict[str, Any]]:
    """The default job's training, as the worker runs it (app/services/fitting.py::_search)."""
    spec = TrainingSpec(dataset_id="bench", dim=dim)
    space = search_space(spec, train)
    assert space is not None
    outcome = autotune(train, space, dim, AutotuneConfig(seed=spec.seed))
    assert outcome is not None
    chosen = chosen_spec(spec, outcome, train).wals
    return outcome.model, {
        "chosen": {**outcome.params, "l2": chosen.l2, "iterations": outcome.steps},
        "cost": outcome.cost,
        "validation": outcome.validation,
    }


def unfold_fixed(train: Interactions, dim: int) -> Any:
    plan = plan_for(TrainingSpec(dataset_id="bench", dim=dim, search={"mode": "off"}), train)
    return plan.fit(train, plan.config)


def implicit_als(matrix: Any, dim: int, alpha: float, reg: float) -> tuple[np.ndarray, np.ndarray]:
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(
            factors=dim, iterations=15, regularization=reg, alpha=alpha, random_state=0, calculate_training_loss=False
        )
        als.fit(matrix, show_progress=False)
    return np.asarray(als.user_factors), np.asarray(als.item_factors)


def implicit_tuned(train: Interactions, dim: int) -> dict[str, Any]:
    fit, valid = holdout_per_user(train, 0.2, seed=1)
    fit_matrix = fit.to_scipy().astype(np.float32)
    started = time.perf_counter()
    grid = []
    for alpha in ALPHAS:
        for reg in REGS:
            U, V = implicit_als(fit_matrix, dim, alpha, reg)
            grid.append((_recall(U, V, fit, valid, TUNING_USERS), alpha, reg))
    tuning = time.perf_counter() - started
    _, alpha, reg = max(grid)
    started = time.perf_counter()
    U, V = implicit_als(train.to_scipy().astype(np.float32), dim, alpha, reg)
    return {"U": U, "V": V, "seconds": time.perf_counter() - started, "tuning s": tuning, "alpha": alpha, "reg": reg}


def sgd_rows(name: str, train: Interactions, test: Interactions, dim: int) -> dict[str, Any]:
    """The SGD side (--with-sgd): Unfold's default SGD job (its search) beside implicit's BPR with its defaults."""
    from implicit.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    spec = TrainingSpec(dataset_id="bench", algorithm="sgd", dim=dim)
    space = search_space(spec, train)
    assert space is not None
    started = time.perf_counter()
    outcome = autotune(train, space, dim, AutotuneConfig(seed=spec.seed))
    assert outcome is not None
    sgd_s = time.perf_counter() - started
    sgd = _recall(outcome.model.user_factors, outcome.model.item_factors, train, test)
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        bpr = BayesianPersonalizedRanking(factors=dim, random_state=0)
        bpr.fit(train.to_scipy().astype(np.float32), show_progress=False)
    bpr_s = time.perf_counter() - started
    # implicit's BPR keeps an item bias in the last column (user column fixed at 1): a plain dot scores it.
    recall = _recall(np.asarray(bpr.user_factors), np.asarray(bpr.item_factors), train, test)
    return {
        "sgd default": sgd,
        "sgd s": sgd_s,
        "sgd chosen": {**outcome.params, "epochs": outcome.steps},
        "implicit bpr": recall,
        "bpr s": bpr_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--dims", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "generalise.json")
    parser.add_argument("--with-sgd", action="store_true", help="also the default SGD job and implicit's BPR")
    parser.add_argument("--skip-wals", action="store_true", help="with --with-sgd: only the SGD side")
    args = parser.parse_args()
    set_threads(None)
    # Compile the WALS loops once (a worker pays this on its first job, not on every one).
    unfold_fixed(planted_communities(PlantedConfig(n_groups=2, users_per_group=25, items_per_group=20)).interactions, 8)

    rows = []
    for name in args.datasets:
        train, test = DATASETS[name]()
        for dim in args.dims:
            if args.skip_wals:
                row = {"dataset": name, "dim": dim, **sgd_rows(name, train, test, dim)}
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
                rows.append(row)
                continue
            # Interleaved and repeated (median of REPEATS): the ratio is what matters, and a busy machine moves both.
            fixed_times, default_times = [], []
            began = time.perf_counter()
            for _ in range(REPEATS):
                if fixed_times and time.perf_counter() - began > REPEAT_SECONDS:
                    break  # big sets: one interleaved pair already takes minutes
                started = time.perf_counter()
                model = unfold_fixed(train, dim)
                fixed_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                searched, report = unfold_default(train, dim)
                default_times.append(time.perf_counter() - started)
            fixed_s, default_s = float(np.median(fixed_times)), float(np.median(default_times))
            fixed = _recall(model.user_factors, model.item_factors, train, test)
            default = _recall(searched.user_factors, searched.item_factors, train, test)
            peer = implicit_tuned(train, dim)
            tuned = _recall(peer["U"], peer["V"], train, test)
            row = {
                "dataset": name,
                "dim": dim,
                "default": default,
                "fixed": fixed,
                "implicit tuned": tuned,
                "of implicit": default / tuned,
                "default s": default_s,
                "fixed s": fixed_s,
                "default / fixed": default_s / fixed_s,
                "implicit s": peer["seconds"],
                "implicit tuning s": peer["tuning s"],
                "implicit α, reg": f"{peer['alpha']:g}, {peer['reg']:g}",
                **report,
                **(sgd_rows(name, train, test, dim) if args.with_sgd else {}),
            }
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            rows.append(row)
    print(f"\n{machine()}")
    if args.with_sgd:
        print_table(rows, ["dataset", "dim", "sgd default", "sgd s", "implicit bpr", "bpr s", "sgd chosen"])
    if args.skip_wals:
        save_json(args.out, rows)
        return
    print_table(
        rows,
        [
            "dataset",
            "dim",
            "default",
            "fixed",
            "implicit tuned",
            "of implicit",
            "default s",
            "fixed s",
            "default / fixed",
            "implicit s",
            "implicit α, reg",
        ],
    )
    save_json(args.out, rows)


if __name__ == "__main__":
    main()
