"""Every benchmark in bench/, each at a size that takes seconds to a few minutes: what `make bench` runs.

    .venv/bin/python bench/run_all.py                  # all of them, one after the other
    .venv/bin/python bench/run_all.py --only ingest folding
    .venv/bin/python bench/run_all.py --list           # the quick command of each, and what it needs

Each script runs in its own process with the arguments below, which only shrink the work (fewer rows,
one dataset, one dim, fewer iterations); the scripts' own defaults are the full-size runs, and
docs/benchmarks.md gives the command behind every figure it quotes. A script whose inputs are missing is
skipped with the reason rather than failed: the datasets of ../shared/data (UNFOLD_SHARED_DATA), `wrk`
for serving, and for the peers (implicit, LightFM) `make bench-extras`. A peer that is not installed only
drops its rows where the script compares against it; a script that is about the peer is skipped.
Quick figures are smoke runs on small inputs, not the ones to quote.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO, SHARED_DATA

OUT = REPO / "var" / "bench"  # the quick runs' JSON, apart from bench/results where full runs write


@dataclass(frozen=True)
class Bench:
    """One script's quick run and what it needs."""

    args: tuple[str, ...] = ()
    data: tuple[str, ...] = ()  # folders of ../shared/data
    tools: tuple[str, ...] = ()  # programs on PATH
    peers: tuple[str, ...] = ()  # modules of `make bench-extras` the script cannot run without
    peer_args: tuple[str, ...] = ()  # added when implicit is installed


BENCHES: dict[str, Bench] = {
    "ingest": Bench(("--rows", "100000", "--repeat", "1")),
    "folding": Bench(("--strategies", "none", "uniform")),
    "index": Bench(
        ("--n-items", "40000", "--queries", "200", "--recall-queries", "200", "--repeats", "1", "--ef-search", "64")
    ),
    "batch_memory": Bench(("--case", "buffered-100x1000")),
    "serving": Bench(("--catalogs", "40000", "--users", "5000", "--seconds", "5"), tools=("wrk",)),
    "sgd_speed": Bench(("--epochs", "1", "--variants", "minibatch_sgd"), data=("ml-1m-implicit",)),
    "sgd_epochs": Bench(
        ("--datasets", "ml100k", "--epochs", "3", "--at", "2", "3", "--out", "sgd_epochs.json"), data=("ml-100k",)
    ),
    "quality": Bench(
        ("--only", "wals-default"), data=("ml-1m-implicit",), peer_args=("implicit-als-default", "implicit-als-tuned")
    ),
    "train": Bench(
        ("--datasets", "lastfm", "--dims", "32", "--iterations", "3", "--models", "unfold-wals", "--out", "train.json"),
        data=("hetrec-lastfm",),
        peer_args=("implicit-als",),
    ),
    "defaults": Bench(
        ("--datasets", "ml100k", "--l2", "0.01", "--w0", "2", "--out", "defaults.json"), data=("ml-100k",)
    ),
    "dims": Bench(
        ("--dataset", "ml100k", "--dims", "32", "64", "--search-dim", "32", "--out", "dims.json"), data=("ml-100k",)
    ),
    "generalise": Bench(
        ("--datasets", "ml100k", "--dims", "32", "--out", "generalise.json"), data=("ml-100k",), peers=("implicit",)
    ),
    "worker_memory": Bench(("--dim", "16", "--iterations", "1")),
    "events_load": Bench(("--seconds", "5", "--groups", "4", "--users-per-group", "1000", "--active-users", "400")),
    "warm_start": Bench(("--dim", "16", "--iterations", "4", "--out", "warm_start.json"), data=("ml-1m-implicit",)),
    "distributed": Bench(
        ("--interactions", "200000", "--iterations", "1", "--ranks", "1", "2")
        + ("--eval-users", "2000", "--out", "distributed.json")
    ),
}


def command(name: str, bench: Bench, with_peers: bool) -> list[str]:
    args = [str(OUT / a) if a.endswith(".json") else a for a in bench.args]
    if with_peers and bench.peer_args:
        # Peer models join the script's own list: --only and --models take several values.
        at = args.index("--only" if "--only" in args else "--models") + 1
        while at < len(args) and not args[at].startswith("--"):
            at += 1
        args[at:at] = bench.peer_args
    return [sys.executable, str(REPO / "bench" / f"{name}.py"), *args]


def missing(bench: Bench) -> list[str]:
    """What this machine lacks for the quick run, each with where to get it."""
    lacks = [f"{SHARED_DATA / d} (set UNFOLD_SHARED_DATA)" for d in bench.data if not (SHARED_DATA / d).exists()]
    lacks += [f"`{t}` on PATH" for t in bench.tools if shutil.which(t) is None]
    lacks += [f"{p} (make bench-extras)" for p in bench.peers if importlib.util.find_spec(p) is None]
    return lacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), help="run these scripts only")
    parser.add_argument("--list", action="store_true", help="print each quick command and what it needs, run nothing")
    args = parser.parse_args()
    with_peers = importlib.util.find_spec("implicit") is not None
    OUT.mkdir(parents=True, exist_ok=True)
    outcomes: list[tuple[str, str]] = []
    for name in args.only or list(BENCHES):
        bench = BENCHES[name]
        line = " ".join(Path(a).relative_to(REPO).as_posix() if a.startswith(str(REPO)) else a
                        for a in command(name, bench, with_peers)[1:])  # fmt: skip
        lacks = missing(bench)
        if args.list:
            print(f"{name:14} {line}" + (f"   [needs {', '.join(lacks)}]" if lacks else ""))
            continue
        if lacks:
            print(f"\n=== {name}: skipped, needs {', '.join(lacks)}", flush=True)
            outcomes.append((name, "skipped"))
            continue
        print(f"\n=== {name}: {line}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command(name, bench, with_peers), cwd=REPO).returncode
        outcomes.append(
            (name, f"{'ok' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - start:.0f} s")
        )
    if args.list:
        return
    print("\n" + "\n".join(f"{name:14} {outcome}" for name, outcome in outcomes))
    if any(outcome.startswith("FAILED") for _, outcome in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
