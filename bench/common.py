"""Shared pieces of the benchmark scripts: data loading, the ranking protocol, timing, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.recsys.interactions import Interactions  # noqa: E402

SHARED_DATA = Path(os.environ.get("UNFOLD_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        sys.exit(f"{path} not found: benchmarks read ../shared/data (set UNFOLD_SHARED_DATA)")
    return path


def _adjacency_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            row = np.asarray(fields[1:], dtype=np.int64)
            users.append(np.full(len(row), int(fields[0]), dtype=np.int64))
            items.append(row)
    return np.concatenate(users), np.concatenate(items)


def _ml1m_parts(fit: tuple[str, ...], score: str) -> tuple[Interactions, Interactions]:
    """ml-1m-implicit's named parts joined to fit on, and the one to score; ids sized over all three."""
    folder = require_data("ml-1m-implicit")
    parts = {name: _adjacency_pairs(folder / f"{name}.txt") for name in ("train", "valid", "test")}
    shape = {
        "n_users": 1 + max(int(u.max()) for u, _ in parts.values()),
        "n_items": 1 + max(int(i.max()) for _, i in parts.values()),
    }
    fit_u = np.concatenate([parts[name][0] for name in fit])
    fit_i = np.concatenate([parts[name][1] for name in fit])
    return Interactions.from_coo(fit_u, fit_i, **shape), Interactions.from_coo(*parts[score], **shape)


def ml1m_implicit() -> tuple[Interactions, Interactions]:
    """ml-1m-implicit as the benchmarks' protocol wants it: train+valid to fit, test to score."""
    return _ml1m_parts(("train", "valid"), "test")


def ml1m_validation() -> tuple[Interactions, Interactions]:
    """ml-1m-implicit's train to fit and valid to score: for choosing settings without seeing test."""
    return _ml1m_parts(("train",), "valid")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    elapsed: list[float] = []
    yield lambda: elapsed[0] if elapsed else time.perf_counter() - start
    elapsed.append(time.perf_counter() - start)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A GitHub-markdown table, so docs/ can quote it verbatim."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")


def save_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
