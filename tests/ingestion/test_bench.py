"""bench/ingest.py's generators round-trip through the parser (a small run keeps the bench honest)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from app.ingestion import parse_file

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bench_format_parses(bench: ModuleType, tmp_path: Path) -> None:
    table = bench.synthetic_table(2_000, seed=0)
    results = {}
    for fmt in bench.FORMATS:
        path = tmp_path / f"upload{bench.SUFFIX[fmt]}"
        bench.write_file(table, fmt, path)
        parsed = parse_file(path)
        assert parsed.stats["format"] == fmt
        assert parsed.stats["rows_read"] == 2_000
        results[fmt] = (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users))
    # Same interactions whatever the format (adjacency reorders rows but not the sets).
    assert len(set(results.values())) == 1
