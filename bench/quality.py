"""The quality table on ml-1m-implicit: Unfold's WALS and SGD variants beside `implicit` and LightFM.

    make bench-extras                      # implicit + LightFM, benchmark extras only
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/quality.py [--only NAME ...]

Protocol of ../shared/data/README.md: fit on train+valid, score every item for each test user,
drop the user's training items, recall@20 and NDCG@20 over users with test items. All runs
share one process, one split and dim 64. Peers are skipped, with a note, when not installed.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import REPO, machine, ml1m_implicit, print_table, save_json

from app.recsys.device import set_threads
from app.recsys.interactions import Interactions
from app.recsys.metrics import ranking_metrics
from app.recsys.sampling import NegativeConfig
from app.recsys.sgd import SGDConfig, fit_sgd
from app.recsys.wals import fit_wals
from app.services.algorithms import wals_config
from app.spec import TrainingSpec

DIM = 64
Factors = tuple[np.ndarray, np.ndarray]


def _sgd(epochs: int, **kw: Any) -> Callable[[Interactions], tuple[Factors, int]]:
    negatives = NegativeConfig(**kw.pop("negatives", {}))

    def run(train: Interactions) -> tuple[Factors, int]:
        model = fit_sgd(train, SGDConfig(dim=DIM, epochs=epochs, negatives=negatives, **kw))
        return (model.user_factors, model.item_factors), epochs

    return run


def _wals(**wals: Any) -> Callable[[Interactions], tuple[Factors, int]]:
    """The service's WALS spec with these `wals` fields: what a job with them trains (λ chosen from the data)."""

    def run(train: Interactions) -> tuple[Factors, int]:
        config = wals_config(TrainingSpec(dataset_id="bench", dim=DIM, wals=wals), train)
        model = fit_wals(train, config)
        return (model.user_factors, model.item_factors), config.iterations

    return run


def _implicit_als(**kw: Any) -> Callable[[Interactions], tuple[Factors, int]]:
    def run(train: Interactions) -> tuple[Factors, int]:
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        model = AlternatingLeastSquares(factors=DIM, random_state=0, calculate_training_loss=False, **kw)
        # implicit's own advice: one BLAS thread, its parallelism is across rows.
        with threadpool_limits(1, "blas"):
            model.fit(train.to_scipy().astype(np.float32), show_progress=False)
        return (np.asarray(model.user_factors), np.asarray(model.item_factors)), model.iterations

    return run


def _implicit_bpr(**kw: Any) -> Callable[[Interactions], tuple[Factors, int]]:
    def run(train: Interactions) -> tuple[Factors, int]:
        from implicit.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(factors=DIM, random_state=0, **kw)
        model.fit(train.to_scipy().astype(np.float32), show_progress=False)
        # implicit's BPR keeps an item bias in the last column (user column fixed at 1): a plain dot scores it.
        return (np.asarray(model.user_factors), np.asarray(model.item_factors)), model.iterations

    return run


def _lightfm_warp(epochs: int, **kw: Any) -> Callable[[Interactions], tuple[Factors, int]]:
    def run(train: Interactions) -> tuple[Factors, int]:
        from lightfm import LightFM

        model = LightFM(no_components=DIM, loss="warp", random_state=0, **kw)
        model.fit(train.to_scipy().tocoo(), epochs=epochs, num_threads=2)
        # Score = u·v + item bias; carry the bias as an extra dimension so one dot product ranks.
        users = np.hstack([model.user_embeddings, np.ones((train.n_users, 1), np.float32)])
        items = np.hstack([model.item_embeddings, model.item_biases[:, None]])
        return (users.astype(np.float32), items.astype(np.float32)), epochs

    return run


BEST_SGD = {
    "variant": "minibatch_sgd",
    "batch_size": 1024,
    "optimizer": "adam",
    "learning_rate": 0.005,
    "l2": 0.05,
    "loss": "softmax",
    "negatives": {"strategy": "in_batch"},
}

RUNS: dict[str, tuple[str, Callable[[Interactions], tuple[Factors, int]]]] = {
    "wals-default": ("Unfold WALS, default spec (cg)", _wals()),
    "wals-cholesky": ("Unfold WALS, default spec, cholesky", _wals(solver="cholesky")),
    "sgd-best": ("Unfold SGD recipe: in-batch softmax + logQ, adam", _sgd(20, **copy.deepcopy(BEST_SGD))),
    "sgd-bpr-uniform": (
        "Unfold SGD bpr, uniform×4, adam 0.005, l2 0.01",
        _sgd(20, loss="bpr", optimizer="adam", learning_rate=0.005, l2=0.01, negatives={"strategy": "uniform"}),
    ),
    "sgd-bce-uniform": ("Unfold SGD bce, uniform×4, adagrad 0.05, l2 1e-4", _sgd(20)),
    "sgd-bce-none": (
        "Unfold SGD bce, negatives none (positives only), adagrad",
        _sgd(20, negatives={"strategy": "none"}),
    ),
    "implicit-als-default": ("implicit ALS, defaults (cg)", _implicit_als()),
    "implicit-als-tuned": (
        "implicit ALS, alpha 10, regularization 100",
        _implicit_als(alpha=10.0, regularization=100.0),
    ),
    "implicit-bpr": (
        "implicit BPR, lr 0.01, reg 0.01, 100 it.",
        _implicit_bpr(learning_rate=0.01, regularization=0.01, iterations=100),
    ),
    "lightfm-warp": ("LightFM WARP, lr 0.05, 30 epochs", _lightfm_warp(30, learning_rate=0.05)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), help="run a subset")
    args = parser.parse_args()
    set_threads(None)
    train, test = ml1m_implicit()
    rows = []
    for key in args.only or list(RUNS):
        label, run = RUNS[key]
        try:
            start = time.perf_counter()
            (users, items), steps = run(train)
            seconds = time.perf_counter() - start
        except ImportError as exc:
            print(f"skipped {key}: {exc} (make bench-extras)")
            continue
        metrics = ranking_metrics(users, items, train, test, (20,))
        rows.append({"run": key, "model": label, **metrics, "s/epoch": seconds / steps, "total s": seconds})
        print(f"{key}: {metrics} {seconds:.1f}s", flush=True)
    print(f"\nml-1m-implicit, train+valid → test, dim {DIM}; {machine()}")
    print_table(rows, ["model", "recall@20", "ndcg@20", "s/epoch", "total s"])
    save_json(REPO / "bench" / "results" / "quality.json", rows)


if __name__ == "__main__":
    main()
