"""Column mapping: explicit names and indices, header name rules, positional defaults."""

from __future__ import annotations

import pytest

from app.ingestion import IngestError, ParseOptions, parse_file

from .conftest import WriteFile, triples

HEADED = "when,rating,movie,who\n10,5,m1,alice\n20,3,m2,bob\n30,4,m1,carol\n"


def test_known_names_in_any_order_and_case(write: WriteFile) -> None:
    parsed = parse_file(write("Rating,MOVIEID,UserID,Time\n5,m1,alice,1\n3,m2,bob,2\n"))
    assert parsed.stats["columns"] == {
        "user": "UserID",
        "item": "MOVIEID",
        "weight": "Rating",
        "timestamp": "Time",
    }
    assert triples(parsed) == {("alice", "m1"): 5.0, ("bob", "m2"): 3.0}


def test_explicit_names(write: WriteFile) -> None:
    options = ParseOptions(user_column="who", item_column="movie", weight_column="rating", timestamp_column="when")
    parsed = parse_file(write(HEADED), options)
    assert triples(parsed) == {("alice", "m1"): 5.0, ("bob", "m2"): 3.0, ("carol", "m1"): 4.0}
    assert parsed.stats["columns"] == {
        "user": "who",
        "item": "movie",
        "weight": "rating",
        "timestamp": "when",
    }


def test_explicit_names_case_insensitive(write: WriteFile) -> None:
    parsed = parse_file(write(HEADED), ParseOptions(user_column="WHO", item_column="Movie"))
    assert ("alice", "m1") in triples(parsed)


def test_explicit_indices_with_header(write: WriteFile) -> None:
    parsed = parse_file(write(HEADED), ParseOptions(user_column="3", item_column="2", weight_column="1"))
    assert triples(parsed) == {("alice", "m1"): 5.0, ("bob", "m2"): 3.0, ("carol", "m1"): 4.0}
    assert parsed.stats["columns"]["user"] == "who"


def test_explicit_indices_without_header(write: WriteFile) -> None:
    text = "5,m1,alice\n3,m2,bob\n"
    parsed = parse_file(write(text), ParseOptions(user_column="2", item_column="1", weight_column="0"))
    assert triples(parsed) == {("alice", "m1"): 5.0, ("bob", "m2"): 3.0}
    assert parsed.stats["columns"] == {"user": 2, "item": 1, "weight": 0, "timestamp": None}


def test_unknown_header_names_use_first_columns_and_no_weight(write: WriteFile) -> None:
    # "amount" is not a known weight name: under a header, weights are never guessed by position.
    parsed = parse_file(write("customer,product,amount\nc1,p1,9.5\nc2,p2,3\n"))
    assert parsed.stats["has_header"] is True
    assert parsed.stats["columns"] == {
        "user": "customer",
        "item": "product",
        "weight": None,
        "timestamp": None,
    }
    assert set(triples(parsed).values()) == {1.0}
    parsed = parse_file(write("customer,product,amount\nc1,p1,9.5\nc2,p2,3\n"), ParseOptions(weight_column="amount"))
    assert triples(parsed)[("c1", "p1")] == 9.5


def test_forced_header_flag(write: WriteFile) -> None:
    text = "a,b\nc,d\ne,f\n"
    assert len(parse_file(write(text)).users) == 3
    parsed = parse_file(write(text), ParseOptions(has_header=True))
    assert parsed.stats["columns"] == {"user": "a", "item": "b", "weight": None, "timestamp": None}
    assert len(parsed.users) == 2


def test_unknown_column_name_lists_the_available_ones(write: WriteFile) -> None:
    with pytest.raises(IngestError) as caught:
        parse_file(write(HEADED), ParseOptions(weight_column="stars"))
    message = str(caught.value)
    assert "'stars'" in message
    assert all(f"'{name}'" in message for name in ("when", "rating", "movie", "who"))
    assert caught.value.column == "stars"


def test_name_without_header(write: WriteFile) -> None:
    with pytest.raises(IngestError, match="no header line.*'rating'"):
        parse_file(write("a,b,1\nc,d,2\n"), ParseOptions(weight_column="rating"))


def test_index_out_of_range(write: WriteFile) -> None:
    with pytest.raises(IngestError, match="index 5 is out of range: the file has 3 columns"):
        parse_file(write("a,b,1\nc,d,2\n"), ParseOptions(weight_column="5"))


def test_same_column_for_two_roles(write: WriteFile) -> None:
    with pytest.raises(IngestError, match="both the user and the item"):
        parse_file(write(HEADED), ParseOptions(user_column="who", item_column="who"))


def test_column_options_on_adjacency(write: WriteFile) -> None:
    with pytest.raises(IngestError, match="no columns to choose"):
        parse_file(write("u1 a b c d\nu2 b\n"), ParseOptions(weight_column="2"))
