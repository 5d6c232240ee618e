"""The folding table: cross-community leakage with and without negatives, on planted data.

    .venv/bin/python bench/folding.py [--noise 0.05] [--seed 0]

Two planted communities joined only by a little noise. Positives-only training (SGD with
strategy `none`, WALS with w0 = 0) lets one community's items leak into the other's top 10;
negatives keep them apart. Prints a markdown table docs/folding.md quotes.
"""

from __future__ import annotations

import argparse
import time

from common import machine, print_table

from app.recsys.folding_diagnostics import folding_diagnostics
from app.recsys.metrics import ranking_metrics
from app.recsys.sampling import NegativeConfig
from app.recsys.sgd import SGDConfig, fit_sgd
from app.recsys.split import split
from app.recsys.synth import PlantedConfig, planted_communities
from app.recsys.wals import WALSConfig, fit_wals

SGD_STRATEGIES = ["none", "uniform", "popularity", "in_batch", "hard", "mixed"]
# In-batch negatives are made for a softmax over the batch (with logQ correction); as independent
# BCE negatives they over-penalise popular items. Every other strategy uses BCE, and so does
# `none`, since pairwise and softmax losses need negatives.
LOSS = {"in_batch": "softmax", "mixed": "softmax"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--strategies", nargs="*", default=SGD_STRATEGIES, choices=SGD_STRATEGIES)
    args = parser.parse_args()

    data = planted_communities(PlantedConfig(noise=args.noise, seed=args.seed))
    train, test = split(data.interactions, "random", 0.2, seed=args.seed)
    rows = []

    def record(name: str, setting: str, model, seconds: float) -> None:
        diag = folding_diagnostics(model.user_factors, model.item_factors, train, test, data.item_groups)
        quality = ranking_metrics(model.user_factors, model.item_factors, train, test, (10,))
        rows.append({"model": name, "setting": setting, **diag, **quality, "seconds": seconds})

    for strategy in args.strategies:
        config = SGDConfig(
            dim=args.dim,
            epochs=20,
            batch_size=256,
            learning_rate=0.05,
            optimizer="adagrad",
            loss=LOSS.get(strategy, "bce"),
            negatives=NegativeConfig(strategy=strategy, per_positive=4),
            seed=args.seed,
        )
        start = time.perf_counter()
        model = fit_sgd(train, config)
        name = f"SGD (minibatch_sgd, {config.loss}, adagrad)"
        record(name, f"negatives={strategy}", model, time.perf_counter() - start)
    for w0 in (0.0, 0.1):
        config = WALSConfig(
            dim=args.dim,
            iterations=10,
            l2=100.0,
            l2_scaling="none",
            unobserved_weight=w0,
            confidence="linear",
            alpha=10.0,
            seed=args.seed,
        )
        start = time.perf_counter()
        model = fit_wals(train, config)
        record("WALS (l2=100, linear α=10)", f"unobserved_weight={w0}", model, time.perf_counter() - start)

    m = data.interactions
    print(
        f"planted: 2 communities, {m.n_users} users, {m.n_items} items, {m.nnz} interactions, "
        f"noise {args.noise}, dim {args.dim}, seed {args.seed}; {machine()}"
    )
    print_table(rows, ["model", "setting", "leakage@10", "unreachable@10", "positive_auc", "recall@10", "seconds"])


if __name__ == "__main__":
    main()
