"""How the default WALS λ is chosen, checked on validation splits: a grid against the rule.

    .venv/bin/python bench/defaults.py [--datasets ml1m lastfm synth10m ml100k mlsmall] [--dim 64]

For every dataset it trains, on a validation split that never touches the test data of bench/train.py:
  default   the default spec: frequency-scaled λ 0.01, w0 2, λ lowered from the counts (wals_defaults.py)
  single    one λ for every row (λ 100, w0 1): the default before the rule
  grid      frequency-scaled λ × w0 around the default
and prints recall@20 next to the median shrinkage s of each point. ml1m and lastfm (and the planted 10M
set) were used to choose the rule; ml100k and mlsmall (MovieLens 100K and latest-small, every rating an
interaction, random 80/20 then 80/20 of the training part) were not, so they test it.

Validation splits: ml1m train → valid; lastfm, synth10m: the training part of bench/train.py split 80/20
again (seed 1); ml100k, mlsmall as above.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, machine, ml1m_validation, print_table, require_data, save_json
from train import _lastfm, _synth10m

from app.recsys.interactions import Interactions
from app.recsys.metrics import ranking_metrics
from app.recsys.split import split
from app.recsys.wals import fit_wals
from app.recsys.wals_defaults import interaction_shrinkage
from app.services.algorithms import wals_config
from app.spec import TrainingSpec


def _again(parts: tuple[Interactions, Interactions]) -> tuple[Interactions, Interactions]:
    return split(parts[0], "random", 0.2, seed=1)


def _movielens(path: Path, delimiter: str, skip: int) -> tuple[Interactions, Interactions]:
    raw = np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=(0, 1))
    users, u = np.unique(raw[:, 0], return_inverse=True)
    items, i = np.unique(raw[:, 1], return_inverse=True)
    full = Interactions.from_coo(u, i, n_users=len(users), n_items=len(items))
    return _again(split(full, "random", 0.2, seed=0))


DATASETS = {
    "ml1m": ml1m_validation,
    "lastfm": lambda: _again(_lastfm()),
    "synth10m": lambda: _again(_synth10m()),
    "ml100k": lambda: _movielens(require_data("ml-100k") / "u.data", "\t", 0),
    "mlsmall": lambda: _movielens(require_data("ml-latest-small") / "ratings.csv", ",", 1),
}
MAX_EVAL_USERS = {"synth10m": 10_000}


def _score(name: str, train: Interactions, valid: Interactions, label: str, wals: dict[str, Any], dim: int) -> dict:
    config = wals_config(TrainingSpec(dataset_id="bench", dim=dim, wals=wals), train)
    model = fit_wals(train, config)
    metrics = ranking_metrics(
        model.user_factors, model.item_factors, train, valid, (20,), max_users=MAX_EVAL_USERS.get(name)
    )
    s = interaction_shrinkage(
        train, config.l2, config.unobserved_weight, config.l2_scaling, config.l2_exponent,
        config.confidence, config.alpha, config.eps,
    )  # fmt: skip
    row = {"dataset": name, "point": label, "l2": config.l2, "w0": config.unobserved_weight, "s": s, **metrics}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--l2", nargs="+", type=float, default=[0.001, 0.003, 0.01, 0.03])
    parser.add_argument("--w0", nargs="+", type=float, default=[0.5, 2.0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "defaults.json")
    args = parser.parse_args()

    rows = []
    for name in args.datasets:
        train, valid = DATASETS[name]()
        rows.append(_score(name, train, valid, "default", {}, args.dim))
        rows.append(_score(name, train, valid, "single", {"l2_scaling": "none"}, args.dim))
        for l2, w0 in itertools.product(args.l2, args.w0):
            rows.append(_score(name, train, valid, "grid", {"l2": l2, "unobserved_weight": w0}, args.dim))
        best = max(r["recall@20"] for r in rows if r["dataset"] == name)
        for r in rows:
            if r["dataset"] == name:
                r["of best"] = r["recall@20"] / best
    print(f"\n{machine()}; dim {args.dim}, 15 iterations, validation recall@20")
    print_table(rows, ["dataset", "point", "l2", "w0", "s", "recall@20", "of best"])
    save_json(args.out, {"machine": machine(), "dim": args.dim, "rows": rows})


if __name__ == "__main__":
    main()
