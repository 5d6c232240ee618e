"""Values: string ids, weights, min_weight, duplicate merging, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.ingestion import ParseOptions, parse_file

from .conftest import WriteFile, stamps, triples


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_ids_stay_strings(write: WriteFile) -> None:
    parsed = parse_file(write("user,item,rating\n007,0042,1\n7,42,2\n007,1e3,3\n"))
    assert list(parsed.user_ids) == ["007", "7"]
    assert list(parsed.item_ids) == ["0042", "42", "1e3"]


def test_quoted_ids_and_spaces_are_kept(write: WriteFile) -> None:
    parsed = parse_file(write('user,item\n"a, b",x\n" c",y\n'))
    assert list(parsed.user_ids) == ["a, b", " c"]


def test_byte_order_mark_and_crlf(write: WriteFile) -> None:
    parsed = parse_file(write(b"\xef\xbb\xbfuserId,itemId,rating\r\nu1,i1,2\r\nu2,i2,3\r\n"))
    assert parsed.stats["columns"]["user"] == "userId"
    assert triples(parsed) == {("u1", "i1"): 2.0, ("u2", "i2"): 3.0}


def test_duplicates_are_summed_with_latest_timestamp(write: WriteFile) -> None:
    text = "u1,i1,1,100\nu2,i1,2,50\nu1,i1,2.5,300\nu1,i2,1,10\nu1,i1,0.5,200\n"
    parsed = parse_file(write(text))
    assert triples(parsed) == {("u1", "i1"): 4.0, ("u2", "i1"): 2.0, ("u1", "i2"): 1.0}
    assert stamps(parsed)[("u1", "i1")] == 300
    assert parsed.stats["duplicates_merged"] == 2
    assert parsed.stats["rows_read"] == 5
    # Merged pairs keep the order in which each pair first appeared.
    assert [(parsed.user_ids[u], parsed.item_ids[i]) for u, i in zip(parsed.users, parsed.items, strict=True)] == [
        ("u1", "i1"),
        ("u2", "i1"),
        ("u1", "i2"),
    ]


def test_min_weight_filters_before_merging(write: WriteFile) -> None:
    # Each (u1, i1) row is below 2 although their sum is not: both are dropped.
    text = "u1,i1,1\nu1,i1,1\nu2,i2,5\nu1,i2,3\nu3,i1,2\n"
    parsed = parse_file(write(text), ParseOptions(min_weight=2))
    assert triples(parsed) == {("u2", "i2"): 5.0, ("u1", "i2"): 3.0, ("u3", "i1"): 2.0}
    assert parsed.stats["rows_dropped_min_weight"] == 2
    assert parsed.stats["duplicates_merged"] == 0
    assert list(parsed.user_ids) == ["u2", "u1", "u3"]  # dense indices only for what is left


def test_zero_weight_is_allowed(write: WriteFile) -> None:
    parsed = parse_file(write("u1,i1,0\nu2,i2,1\n"))
    assert triples(parsed)[("u1", "i1")] == 0.0


def test_integer_timestamps(write: WriteFile) -> None:
    parsed = parse_file(write("u,i,r,ts\nu1,i1,1,978300760\nu2,i2,1,-5\n"))
    assert stamps(parsed) == {("u1", "i1"): 978300760, ("u2", "i2"): -5}


def test_iso_timestamps(write: WriteFile) -> None:
    text = "user,item,timestamp\nu1,i1,2020-01-01T00:00:00\nu2,i2,2020-01-02 12:30:00\nu3,i1,2021-06-01\n"
    parsed = parse_file(write(text))
    assert parsed.stats["columns"]["weight"] is None
    assert stamps(parsed) == {
        ("u1", "i1"): epoch("2020-01-01T00:00:00"),
        ("u2", "i2"): epoch("2020-01-02T12:30:00"),
        ("u3", "i1"): epoch("2021-06-01T00:00:00"),
    }


def test_iso_timestamps_with_zones_and_fractions(write: WriteFile) -> None:
    text = (
        "user,item,timestamp\n"
        "u1,i1,2020-01-01T02:00:00+02:00\n"
        "u2,i2,2020-01-01T00:00:00Z\n"
        "u3,i1,2020-01-01T00:00:00.750\n"  # a naive time among zoned ones: read as UTC
    )
    parsed = parse_file(write(text))
    midnight = epoch("2020-01-01T00:00:00")
    assert stamps(parsed) == {("u1", "i1"): midnight, ("u2", "i2"): midnight, ("u3", "i1"): midnight}


def test_timestamps_with_spaces(write: WriteFile) -> None:
    parsed = parse_file(write("u, i, r, ts\nu1, i1, 1, 100\nu2, i2, 1, 2020-01-01 \n"))
    assert stamps(parsed) == {("u1", " i1"): 100, ("u2", " i2"): epoch("2020-01-01T00:00:00")}


def test_fractional_epoch_timestamps_are_floored(write: WriteFile) -> None:
    parsed = parse_file(write("u1,i1,1,100.9\nu2,i2,1,200.1\n"))
    assert stamps(parsed) == {("u1", "i1"): 100, ("u2", "i2"): 200}


@pytest.mark.parametrize("weight", ["1e3", "+2", ".5", " 7 "])
def test_number_syntax(write: WriteFile, weight: str) -> None:
    parsed = parse_file(write(f"u1,i1,{weight}\nu2,i2,1\n"))
    assert triples(parsed)[("u1", "i1")] == float(weight)
