"""Peak memory of a worker's first WALS job on the planted 10M set, over the idle worker.

    .venv/bin/python bench/worker_memory.py [--dim 64] [--iterations 3]

The process first imports what `unfold worker` imports (workers.tasks: Celery, SQLAlchemy, faiss, torch,
numba) and records that peak as the idle worker; then it loads the training split (bench/train.py's
synth10m cache), resolves the default spec from the data and fits, compiled loops loading included. The
ratio is (peak − idle) / (train CSR + factors), the quantity the memory target is about.

What it leaves out: a job in the service also holds the whole dataset next to its training split (and the
test split for evaluation), about 1.3× the training CSR more on a random 80/20 split.
"""

from __future__ import annotations

import argparse
import resource


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()

    import workers.tasks  # noqa: F401  (the idle worker's imports)
    from app.recsys.device import set_threads

    set_threads(None)
    idle = _peak_mb()

    from train import _synth10m

    from app.recsys.wals import fit_wals
    from app.services.algorithms import wals_config
    from app.spec import TrainingSpec

    train, test = _synth10m()
    del test
    config = wals_config(TrainingSpec(dataset_id="bench", dim=args.dim, wals={"iterations": args.iterations}), train)
    model = fit_wals(train, config)
    csr = train.indptr.nbytes + train.indices.nbytes + train.weights.nbytes
    data = (csr + model.user_factors.nbytes + model.item_factors.nbytes) / 2**20
    peak = _peak_mb()
    print(f"idle worker {idle:.0f} MB, peak {peak:.0f} MB, data {data:.0f} MB: {(peak - idle) / data:.2f}x the data")


if __name__ == "__main__":
    main()
