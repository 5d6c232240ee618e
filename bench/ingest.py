"""Benchmark app.ingestion.parse_file on synthetic uploads of every format.

    .venv/bin/python bench/ingest.py --rows 1000000 --seed 0 --format all

Files are generated in one child process and each format is timed (best of --repeat) in another,
fresh one. The parent imports nothing heavy, because Linux carries a parent's peak RSS into its
children's getrusage figures: so "peak MB" belongs to one format's parse, and "base MB" is the
child's peak before parsing (Python, numpy, pyarrow and app.ingestion imported).
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
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FORMATS = ("csv", "tsv", "movielens", "adjacency", "parquet")
SUFFIX = {"csv": ".csv", "tsv": ".tsv", "movielens": ".dat", "adjacency": ".txt", "parquet": ".parquet"}
COLUMNS = (("format", "<10"), ("rows", ">10"), ("file MB", ">8"), ("seconds", ">8"), ("rows/s", ">11"),
           ("peak MB", ">8"), ("base MB", ">8"))  # fmt: skip


def power_law(rng: np.random.Generator, n_values: int, size: int, exponent: float) -> np.ndarray:
    """Indices in [0, n_values) with probability proportional to 1 / (rank + 1) ** exponent."""
    import numpy as np

    p = 1.0 / np.arange(1, n_values + 1) ** exponent
    return rng.choice(n_values, size=size, p=p / p.sum())


def synthetic_table(rows: int, seed: int) -> pa.Table:
    """rows interactions: string ids with popular heads, half-star ratings, 2015-2020 timestamps."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n_users, n_items = max(2, rows // 20), max(2, rows // 50)
    user_ids = pa.array([f"u{i:07d}" for i in range(n_users)])
    item_ids = pa.array([f"i{i:06d}" for i in range(n_items)])
    users = user_ids.take(pa.array(power_law(rng, n_users, rows, 0.5)))
    items = item_ids.take(pa.array(power_law(rng, n_items, rows, 0.9)))
    weights = rng.integers(1, 11, rows) / 2.0
    timestamps = rng.integers(1_420_070_400, 1_609_459_200, rows)
    return pa.table({"userId": users, "itemId": items, "rating": weights, "timestamp": timestamps})


def write_file(table: pa.Table, fmt: str, path: Path) -> None:
    """Write the table in one upload format."""
    import numpy as np
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt in ("csv", "tsv", "movielens"):
        options = pv.WriteOptions(
            include_header=fmt != "movielens", delimiter="," if fmt == "csv" else "\t", quoting_style="none"
        )
        pv.write_csv(table, path, write_options=options)
        if fmt == "movielens":
            path.write_bytes(path.read_bytes().replace(b"\t", b"::"))
    else:  # adjacency: one line per user, its items in file order (one Python step per user)
        users = np.asarray(table.column("userId").to_numpy(zero_copy_only=False))
        items = np.asarray(table.column("itemId").to_numpy(zero_copy_only=False))
        order = np.argsort(users, kind="stable")
        users, items = users[order], items[order]
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
        with path.open("w") as f:
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                f.write(f"{users[start]} {' '.join(items[start:end])}\n")


def measure(path: Path, repeat: int) -> dict[str, float]:
    """Child side: best-of-repeat seconds and the process's peak RSS before and after parsing."""
    from app.ingestion import ParseOptions, parse_file

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        parsed = parse_file(path, ParseOptions())
        best = min(best, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": best, "peak_mb": peak / 1024, "base_mb": base / 1024, "n": len(parsed.users)}


def row(*values: object) -> str:
    """One line of the result table."""
    return " ".join(f"{value:{align}}" for value, (_, align) in zip(values, COLUMNS, strict=True))


def main() -> None:
    """Generate, time and print the table."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=(*FORMATS, "all"), default="all")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child mode: time one file
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # child mode: write the files
    args = parser.parse_args()
    formats = FORMATS if args.format == "all" else (args.format,)
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return
    if args.generate:
        table = synthetic_table(args.rows, args.seed)
        for fmt in formats:
            write_file(table, fmt, args.generate / f"upload{SUFFIX[fmt]}")
        return
    header = row(*(name for name, _ in COLUMNS))
    print(header, "-" * len(header), sep="\n")
    with tempfile.TemporaryDirectory(prefix="unfold-bench-") as tmp:
        sizes = ["--rows", str(args.rows), "--seed", str(args.seed), "--format", args.format]
        subprocess.run([sys.executable, __file__, "--generate", tmp, *sizes], check=True)
        for fmt in formats:
            path = Path(tmp) / f"upload{SUFFIX[fmt]}"
            child = subprocess.run(
                [sys.executable, __file__, "--measure", str(path), "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout)
            seconds = result["seconds"]
            size = f"{path.stat().st_size / 2**20:.1f}"
            print(row(fmt, f"{args.rows:,}", size, f"{seconds:.3f}", f"{args.rows / seconds:,.0f}",
                      f"{result['peak_mb']:.0f}", f"{result['base_mb']:.0f}"))  # fmt: skip
            path.unlink()


if __name__ == "__main__":
    main()
