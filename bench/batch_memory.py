"""Peak memory of one batch-recommendations call in the API, over the process with the model loaded.

    .venv/bin/python bench/batch_memory.py            # every case, each in a fresh process
    .venv/bin/python bench/batch_memory.py --case buffered-100x1000

Each case runs in its own process: it builds a model of 10,000 users × 40,000 items (dim 64, 24-byte
ids, exact search), loads it as the API does (LoadedModel, its id maps built), records the peak RSS,
then answers one batch exactly as the route does (the cost check, the search, the dicts, orjson; a
stream's lines are encoded and dropped as a socket would send them) and reports the new peak. The
difference is the call's cost; docs/hardening.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (users, k, streamed): the worst admissible buffered answers under the default limits (users × k =
# UNFOLD_MAX_BATCH_RESULTS, two shapes), the worst stream (UNFOLD_MAX_BATCH_USERS × UNFOLD_MAX_K), and
# the request answered buffered, as it was before the limits.
CASES = {
    "buffered-100x1000": (100, 1000, False),
    "buffered-10000x10": (10_000, 10, False),
    "ndjson-10000x1000": (10_000, 1000, True),
    "unbounded-10000x1000": (10_000, 1000, False),
}
N_USERS, N_ITEMS, DIM = 10_000, 40_000, 64


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(name: str) -> dict[str, float | int | str]:
    import numpy as np
    import orjson

    from app.limits import Limits, check_batch_cost
    from app.recsys.artifact import ModelArtifact, save_model
    from app.services import serving

    n_users, k, streamed = CASES[name]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        save_model(
            Path(folder),
            ModelArtifact(
                user_factors=rng.normal(size=(N_USERS, DIM)).astype(np.float32),
                item_factors=rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
                user_ids=np.array([f"user-{i:019d}" for i in range(N_USERS)]),
                item_ids=np.array([f"item-{i:019d}" for i in range(N_ITEMS)]),
                seen_indptr=np.arange(N_USERS + 1, dtype=np.int64) * 20,
                seen_indices=rng.integers(0, N_ITEMS, N_USERS * 20).astype(np.int32),
                meta={"algorithm": "bench", "spec": {}},
            ),
        )
        model = serving.LoadedModel.load("mdl_bench", Path(folder))
        _ = model.user_index, model.item_index, model.longest_item_json
    users = [f"user-{i:019d}" for i in range(n_users)]
    serving.recommend_for_users(model, users[:10], 10, True)  # warm: first-call allocations are not the batch's
    before = _peak_mb()
    start = time.perf_counter()
    sent = 0
    if streamed:
        _, unknown = serving.batch_known_users(model, users)
        sent += len(orjson.dumps({"model_id": model.id, "unknown_users": unknown})) + 1
        for user, scored in serving.iter_batch(model, users, k, True):
            sent += len(orjson.dumps({"user": user, "items": [{"item": i, "score": s} for i, s in scored]})) + 1
    else:
        if not name.startswith("unbounded"):
            n_known, per_user, estimate = serving.batch_cost(model, users, k)
            check_batch_cost(n_known, per_user, estimate, Limits())
        results, unknown = serving.recommend_batch(model, users, k, True)
        payload = {
            "model_id": model.id,
            "results": {u: [{"item": i, "score": s} for i, s in scored] for u, scored in results.items()},
            "unknown_users": unknown,
        }
        sent = len(orjson.dumps(payload))
    return {
        "case": name,
        "users": n_users,
        "k": k,
        "response_mb": round(sent / 2**20, 1),
        "seconds": round(time.perf_counter() - start, 2),
        "loaded_peak_mb": round(before),
        "call_peak_mb": round(_peak_mb() - before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    for name in CASES:  # a fresh process each: ru_maxrss only ever grows
        out = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
