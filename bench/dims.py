"""Does quality keep rising with the dimension on sparse data? Recall@20 against dim with the chosen settings.

    .venv/bin/python bench/dims.py [--dataset amazon] [--dims 64 128 256 512 1024] [--search-dim 128]

The settings search (app/recsys/autotune.py) runs once, at --search-dim, on the training data's validation
split, as a default job would; its choice (confidence, w0, λ from the shrinkage, iterations) then trains a
model at every dim on all of the training data, scored on test (bench/shared_sets.py's splits, every test user).
A search per dim would cost a search per dim; the point here is whether one choice keeps paying as the
dimension grows, as frequency-scaled λ promises (Rendle et al. 2022).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import REPO, machine, print_table, save_json
from shared_sets import DATASETS

from app.recsys.autotune import AutotuneConfig, autotune
from app.recsys.device import set_threads
from app.recsys.metrics import ranking_metrics
from app.services.algorithms import chosen_spec, plan_for, search_space
from app.spec import TrainingSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon", choices=list(DATASETS))
    parser.add_argument("--dims", nargs="+", type=int, default=[64, 128, 256, 512, 1024])
    parser.add_argument("--search-dim", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dims.json")
    args = parser.parse_args()
    set_threads(None)
    train, test = DATASETS[args.dataset]()

    spec = TrainingSpec(dataset_id="bench", dim=args.search_dim)
    space = search_space(spec, train)
    assert space is not None
    started = time.perf_counter()
    outcome = autotune(train, space, args.search_dim, AutotuneConfig(seed=spec.seed))
    assert outcome is not None
    chosen = chosen_spec(spec, outcome, train)
    wals = chosen.wals.model_dump(mode="json")
    print(json.dumps({"search s": round(time.perf_counter() - started, 1), "chosen": wals}), flush=True)

    rows: list[dict[str, Any]] = []
    for dim in args.dims:
        plan = plan_for(chosen.model_copy(update={"dim": dim, "search": {"mode": "off"}}), train)
        started = time.perf_counter()
        model = plan.fit(train, plan.config)
        seconds = time.perf_counter() - started
        metrics = ranking_metrics(model.user_factors, model.item_factors, train, test, (20,))
        row = {"dataset": args.dataset, "dim": dim, **metrics, "s/iter": seconds / plan.steps, "fit s": seconds}
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    print(f"\n{machine()}; settings chosen at dim {args.search_dim}: {json.dumps(wals)}")
    print_table(rows, ["dataset", "dim", "recall@20", "ndcg@20", "s/iter", "fit s"])
    save_json(args.out, {"chosen": wals, "rows": rows})


if __name__ == "__main__":
    main()
