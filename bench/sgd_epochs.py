"""How many epochs the SGD recipe should train with the search off: per-epoch recall@20 curves.

    .venv/bin/python bench/sgd_epochs.py [--datasets ml1m yelp mlsmall lastfm amazon ml100k] [--epochs 40]

For each dataset of bench/shared_sets.py, the recipe (the `sgd` block's defaults, dim 64) is trained for
--epochs epochs twice:
  validation  on the train part less the service's per-user holdout (10 %, seed 0: the search's split),
              scored on that holdout after every epoch (up to 5,000 users) — what a choice may look at;
  test        on the whole train part, scored on test after every epoch — the check of a choice already
              made (--no-test skips it).
It prints each curve's peak and the share of the peak kept at --at epochs, and the mean and worst share
over the datasets per epoch count, the rule RECIPE_EPOCHS was chosen by (docs/sgd-speed.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, machine, print_table, save_json
from shared_sets import DATASETS

from app.recsys.device import set_threads
from app.recsys.interactions import Interactions
from app.recsys.metrics import ranking_metrics
from app.recsys.sgd import fit_sgd
from app.recsys.sgd_config import sgd_config_from_spec
from app.recsys.split import holdout_per_user
from app.spec import SGDSpec

VALIDATION_USERS = 5000


def curve(train: Interactions, scored: Interactions, epochs: int, max_users: int | None) -> list[float]:
    """recall@20 on `scored` after each of `epochs` epochs of the recipe trained on `train`."""
    config = sgd_config_from_spec(SGDSpec(epochs=epochs).model_dump(), dim=64, seed=0)
    points: list[float] = []

    def evaluator(U: np.ndarray, V: np.ndarray) -> dict[str, float]:
        users, items = (np.ascontiguousarray(x, dtype=np.float32) for x in (U, V))
        points.append(ranking_metrics(users, items, train, scored, (20,), max_users=max_users)["recall@20"])
        return {}

    fit_sgd(train, config, None, evaluator)
    return points


def kept(points: list[float], epochs: int) -> float:
    """The share of the curve's peak (%) after this many epochs."""
    return 100.0 * points[epochs - 1] / max(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--at", nargs="+", type=int, default=[13, 16, 20], help="epoch counts to report")
    parser.add_argument("--no-test", action="store_true", help="validation curves only")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sgd_epochs.json")
    args = parser.parse_args()
    set_threads(None)

    runs: dict[str, dict[str, Any]] = {}
    for name in args.datasets:
        train, test = DATASETS[name]()
        fit, validation = holdout_per_user(train, 0.1, seed=0)
        run: dict[str, Any] = {"validation": curve(fit, validation, args.epochs, VALIDATION_USERS)}
        if not args.no_test:
            run["test"] = curve(train, test, args.epochs, None)
        runs[name] = run
        print(name, {k: [round(x, 4) for x in v] for k, v in run.items()}, flush=True)

    print(f"\n{machine()}; the recipe at dim 64, validation recall@20 as a share of each curve's peak")
    rows = []
    for name, run in runs.items():
        points: list[float] = run["validation"]
        row = {"dataset": name, "peak epoch": points.index(max(points)) + 1, "peak": max(points)}
        row.update({f"% at {e}": kept(points, e) for e in args.at if e <= args.epochs})
        if "test" in run:
            row.update({f"test at {e}": run["test"][e - 1] for e in args.at if e <= args.epochs})
        rows.append(row)
    print_table(rows, list(rows[0]))
    print("\nepochs | mean % of peak | worst % of peak")
    for e in range(1, args.epochs + 1):
        shares = [kept(run["validation"], e) for run in runs.values()]
        print(f"{e} | {np.mean(shares):.1f} | {min(shares):.1f}")
    save_json(args.out, {"machine": machine(), "epochs": args.epochs, "runs": runs})


if __name__ == "__main__":
    main()
