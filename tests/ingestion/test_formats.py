"""Every format, explicit and auto-detected, parses to the same interactions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.ingestion import IngestError, ParseOptions, parse_file
from app.ingestion import adjacency as adjacency_module
from app.ingestion import readers as readers_module

from .conftest import WriteFile, stamps, triples

EXPECTED = {("u1", "i1"): 5.0, ("u1", "i2"): 3.0, ("u2", "i1"): 4.0, ("u3", "i3"): 1.5}
ROWS = [
    ("u1", "i1", "5", "100"),
    ("u1", "i2", "3", "200"),
    ("u2", "i1", "4", "300"),
    ("u3", "i3", "1.5", "400"),
]


def table_text(delimiter: str, header: str | None = None) -> str:
    lines = [header] if header else []
    lines += [delimiter.join(row) for row in ROWS]
    return "\n".join(lines) + "\n"


def test_csv_with_header(write: WriteFile) -> None:
    parsed = parse_file(write(table_text(",", "userId,itemId,rating,timestamp")))
    assert triples(parsed) == EXPECTED
    assert parsed.stats["format"] == "csv"
    assert parsed.stats["has_header"] is True
    assert parsed.stats["columns"] == {
        "user": "userId",
        "item": "itemId",
        "weight": "rating",
        "timestamp": "timestamp",
    }
    assert stamps(parsed)[("u3", "i3")] == 400


def test_csv_without_header(write: WriteFile) -> None:
    parsed = parse_file(write(table_text(",")))
    assert triples(parsed) == EXPECTED
    assert parsed.stats["has_header"] is False
    assert parsed.stats["columns"] == {"user": 0, "item": 1, "weight": 2, "timestamp": 3}


def test_tsv_with_and_without_header(write: WriteFile) -> None:
    with_header = parse_file(write(table_text("\t", "user\titem\tweight\tts"), "a.tsv"))
    without = parse_file(write(table_text("\t"), "b.tsv"))
    for parsed in (with_header, without):
        assert triples(parsed) == EXPECTED
        assert parsed.stats["format"] == "tsv"
    assert with_header.stats["has_header"] and not without.stats["has_header"]


def test_space_separated_table(write: WriteFile) -> None:
    parsed = parse_file(write(table_text(" ")))
    assert triples(parsed) == EXPECTED
    assert parsed.stats["format"] == "tsv"
    assert parsed.stats["delimiter"] == " "


def test_movielens(write: WriteFile) -> None:
    parsed = parse_file(write(table_text("::"), "ratings.dat"))
    assert triples(parsed) == EXPECTED
    assert parsed.stats["format"] == "movielens"
    assert stamps(parsed)[("u1", "i2")] == 200


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 11, 64])
def test_movielens_separator_split_across_blocks(write: WriteFile, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    # Tiny blocks put '::' (and the ':' runs around ids like 'a:b') across every boundary.
    monkeypatch.setattr(readers_module, "FOLD_BLOCK", block)
    text = "u1::a:b::5::100\nu2::i2::4::200\nu1::i2::3::300\n"
    parsed = parse_file(write(text), ParseOptions(format="movielens"))
    assert triples(parsed) == {("u1", "a:b"): 5.0, ("u2", "i2"): 4.0, ("u1", "i2"): 3.0}


def test_adjacency(write: WriteFile) -> None:
    text = "u1 i1 i2 i3\nu2 i2\nu3\nu4  i1\ti3  \r\n\nu1 i1\n"
    parsed = parse_file(write(text, "train.txt"))
    assert parsed.stats["format"] == "adjacency"
    assert triples(parsed) == {
        ("u1", "i1"): 2.0,  # listed on two lines: merged by summing
        ("u1", "i2"): 1.0,
        ("u1", "i3"): 1.0,
        ("u2", "i2"): 1.0,
        ("u4", "i1"): 1.0,
        ("u4", "i3"): 1.0,
    }
    assert parsed.timestamps is None
    assert "u3" not in parsed.user_ids  # a user without items is skipped...
    assert parsed.stats["users_without_items"] == 1  # ...but counted
    assert parsed.stats["lines_read"] == 5
    assert parsed.stats["duplicates_merged"] == 1


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5, 8, 13])
def test_adjacency_blocks_split_anywhere(write: WriteFile, monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    # Tiny blocks cut inside ids, CRLFs and blank lines; results and line numbers must not change.
    text = b"\xef\xbb\xbfusers items\r\nu1 i1 i2\r\n\r\nu2\ru3  i3 i1\n\nu1 i2 i4\n"
    path = write(text)
    options = ParseOptions(format="adjacency", has_header=True)
    expected = parse_file(path, options)
    monkeypatch.setattr(adjacency_module, "BLOCK", block)
    parsed = parse_file(path, options)
    assert (
        triples(parsed)
        == triples(expected)
        == {
            ("u1", "i1"): 1.0,
            ("u1", "i2"): 2.0,
            ("u3", "i3"): 1.0,
            ("u3", "i1"): 1.0,
            ("u1", "i4"): 1.0,
        }
    )
    assert parsed.stats == expected.stats
    assert parsed.stats["users_without_items"] == 1
    assert list(parse_file(path, ParseOptions(format="adjacency")).user_ids)[0] == "users"  # BOM dropped
    with pytest.raises(IngestError) as caught:  # a NUL id on line 5 (the lone CR ends line 4)
        parse_file(write(text.replace(b"i3", b"i\x003")), options)
    assert caught.value.line == 5


def test_adjacency_explicit_with_few_items_per_line(write: WriteFile) -> None:
    # Three tokens on every line would sniff as a table; the option says otherwise.
    parsed = parse_file(write("u1 a b\nu2 b c\n"), ParseOptions(format="adjacency"))
    assert set(triples(parsed)) == {("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c")}


def test_adjacency_sniffed_when_extra_tokens_are_not_numbers(write: WriteFile) -> None:
    parsed = parse_file(write("u1 a b\nu2 b c\n"))
    assert parsed.stats["format"] == "adjacency"


def test_parquet(write: WriteFile, tmp_path: Path) -> None:
    path = tmp_path / "upload.raw"  # detected by its magic bytes, not its name
    table = pa.table(
        {
            "user_id": pa.array([7, 7, 8, 9]),
            "movieId": pa.array(["i1", "i2", "i1", "i3"]).dictionary_encode(),
            "score": pa.array([1, 2, 3, 4], pa.int32()),
            "ts": pa.array([0, 1_500, 2_000, 3_000], pa.timestamp("ms", tz="UTC")),
            "other": pa.array(["x"] * 4),
        }
    )
    pq.write_table(table, path)
    parsed = parse_file(path)
    assert parsed.stats["format"] == "parquet"
    assert parsed.stats["columns"] == {
        "user": "user_id",
        "item": "movieId",
        "weight": "score",
        "timestamp": "ts",
    }
    assert triples(parsed) == {("7", "i1"): 1.0, ("7", "i2"): 2.0, ("8", "i1"): 3.0, ("9", "i3"): 4.0}
    assert stamps(parsed) == {("7", "i1"): 0, ("7", "i2"): 1, ("8", "i1"): 2, ("9", "i3"): 3}


def test_extension_breaks_ties(write: WriteFile) -> None:
    # Commas and tabs on line 1: the .csv name decides, so the tab stays inside the item id.
    text = "u1,i\t1,5\nu2,i\t2,3\n"
    as_csv = parse_file(write(text), filename="clicks.csv")
    assert as_csv.stats["format"] == "csv"
    assert set(as_csv.item_ids) == {"i\t1", "i\t2"}
    assert parse_file(write(text)).stats["format"] == "tsv"


def test_explicit_format_wins_over_sniffing(write: WriteFile) -> None:
    path = write("u1,a\tb\nu2,c\td\n")
    assert set(parse_file(path).user_ids) == {"u1,a", "u2,c"}  # sniffed: tabs first
    parsed = parse_file(path, ParseOptions(format="csv"))
    assert parsed.stats["format"] == "csv"
    assert set(parsed.item_ids) == {"a\tb", "c\td"}


def test_result_types_and_json_stats(write: WriteFile) -> None:
    parsed = parse_file(write(table_text(",", "userId,itemId,rating,timestamp")))
    assert parsed.user_ids.dtype.kind == "U" and parsed.item_ids.dtype.kind == "U"
    assert parsed.users.dtype == np.int32 and parsed.items.dtype == np.int32
    assert parsed.weights.dtype == np.float32
    assert parsed.timestamps is not None and parsed.timestamps.dtype == np.int64
    stats = json.loads(json.dumps(parsed.stats))
    assert stats["n_users"] == 3 and stats["n_items"] == 3 and stats["n_interactions"] == 4
    assert stats["rows_read"] == 4
    assert stats["density"] == pytest.approx(4 / 9)
    assert stats["weight"] == {"min": 1.5, "max": 5.0, "mean": pytest.approx(13.5 / 4)}
    assert stats["user_degree"] == {"min": 1, "median": 1.0, "max": 2}
    assert stats["item_degree"] == {"min": 1, "median": 1.0, "max": 2}
    assert stats["timestamp"]["min"] == 100 and stats["timestamp"]["max"] == 400
    assert stats["timestamp"]["min_iso"] == "1970-01-01T00:01:40Z"


def test_ids_in_order_of_first_appearance(write: WriteFile) -> None:
    parsed = parse_file(write("zeta,b\nalpha,a\nzeta,c\nmid,a\n"))
    assert list(parsed.user_ids) == ["zeta", "alpha", "mid"]
    assert list(parsed.item_ids) == ["b", "a", "c"]
    assert list(parsed.users) == [0, 1, 0, 2]


def test_parquet_magic_with_wrong_format_option(write: WriteFile, tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user": ["a", "b"], "item": ["c", "d"]}), path)
    with pytest.raises(IngestError, match="Parquet file, not csv"):
        parse_file(path, ParseOptions(format="csv"))
