"""Every bad upload raises IngestError with a sentence naming the line and column when known."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.ingestion import IngestError, ParseOptions, parse_file

from .conftest import WriteFile

HEADER = "userId,movieId,rating,timestamp\n"
GOOD = ["u1,m1,4,100", "u2,m2,3,200", "u3,m1,5,300"]


def with_line(bad: str, header: bool = True) -> str:
    """A file whose 4th physical line (3rd without header... see callers) is `bad`."""
    lines = GOOD[:2] + [bad] + GOOD[2:]
    return (HEADER if header else "") + "\n".join(lines) + "\n"


def raises(path: Path, options: ParseOptions | None = None, **kwargs: str) -> IngestError:
    with pytest.raises(IngestError) as caught:
        parse_file(path, options, **kwargs)
    return caught.value


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   \n\t\n", b"\r\n"])
def test_empty_file(write: WriteFile, content: bytes) -> None:
    assert str(raises(write(content))) == "the file is empty"


def test_header_only(write: WriteFile) -> None:
    assert "no data rows" in str(raises(write(HEADER)))


def test_single_user(write: WriteFile) -> None:
    error = raises(write("u1,a,1\nu1,b,1\nu1,c,1\n"))
    assert str(error) == "only one user ('u1'): a recommender needs at least two"


def test_single_item(write: WriteFile) -> None:
    assert "only one item ('a')" in str(raises(write("u1,a\nu2,a\n")))


def test_single_user_after_min_weight(write: WriteFile) -> None:
    error = raises(write("u1,a,5\nu1,b,5\nu2,a,1\n"), ParseOptions(min_weight=2))
    assert "only one user ('u1') after min_weight filtering" in str(error)


def test_everything_below_min_weight(write: WriteFile) -> None:
    error = raises(write("u1,a,1\nu2,b,1.5\n"), ParseOptions(min_weight=2))
    assert "min_weight=2" in str(error) and "largest is 1.5" in str(error)


def test_bad_number_with_header(write: WriteFile) -> None:
    error = raises(write(with_line("u9,m9,abc,400")))
    assert str(error) == "line 4, column 'rating': 'abc' is not a number"
    assert (error.line, error.column) == (4, "rating")


def test_bad_number_without_header(write: WriteFile) -> None:
    error = raises(write(with_line("u9,m9,4..5,400", header=False)))
    assert str(error) == "line 3, column 2 (counting from 0): '4..5' is not a number"
    assert (error.line, error.column) == (3, "2")


def test_blank_lines_count_in_line_numbers(write: WriteFile) -> None:
    error = raises(write("userId,movieId,rating\n\nu1,m1,1\n\r\nu2,m2,x\n"))
    assert error.line == 5


def test_empty_weight(write: WriteFile) -> None:
    assert str(raises(write(with_line("u9,m9,,400")))) == "line 4, column 'rating': the weight is empty"


@pytest.mark.parametrize("bad", ["u9,m9", "u9,m9,1,2,3"])
def test_wrong_field_count(write: WriteFile, bad: str) -> None:
    error = raises(write(with_line(bad)))
    found = len(bad.split(","))
    assert str(error) == f"line 4: expected 4 fields (userId, movieId, rating, timestamp) but found {found}"
    assert error.line == 4


def test_wrong_field_count_tsv_and_movielens(write: WriteFile) -> None:
    assert raises(write("a\tb\t1\nc\td\t2\ne\tf\n")).line == 3
    error = raises(write("1::2::3::4\n5::6::7::8\n9::10::11\n"))
    assert error.line == 3 and "expected 4 fields but found 3" in str(error)


@pytest.mark.parametrize(
    ("weight", "reason"),
    [("nan", "NaN"), ("NaN", "NaN"), ("inf", "infinite"), ("-inf", "infinite"), ("-1", "negative")],
)
def test_non_finite_or_negative_weight(write: WriteFile, weight: str, reason: str) -> None:
    error = raises(write(with_line(f"u9,m9,{weight},400")))
    assert str(error).startswith("line 4, column 'rating': ")
    assert reason in str(error)


def test_negative_weight_in_movielens_file_names_the_line(write: WriteFile) -> None:
    error = raises(write("1::2::3::4\n\n5::6::-7::8\n"))
    assert str(error).startswith("line 3, column 2 (counting from 0): the weight -7 is negative")


def test_bad_timestamp(write: WriteFile) -> None:
    error = raises(write(with_line("u9,m9,4,yesterday")))
    assert str(error).startswith("line 4, column 'timestamp': 'yesterday' is not a timestamp")


def test_empty_id(write: WriteFile) -> None:
    assert str(raises(write(with_line(",m9,4,400")))) == "line 4, column 'userId': the user id is empty"


def test_invalid_utf8_in_table(write: WriteFile) -> None:
    content = (HEADER + "u1,m1,4,100\nu2,m\xff,3,200\n").encode("latin-1")
    error = raises(write(content))
    assert (error.line, error.column) == (3, "movieId")
    assert "UTF-8" in str(error)


def test_invalid_utf8_in_movielens(write: WriteFile) -> None:
    error = raises(write(b"1::2::3::4\n1::\xe9t\xe9::3::4\n"))
    assert error.line == 2 and "UTF-8" in str(error)


def test_invalid_utf8_in_adjacency(write: WriteFile) -> None:
    error = raises(write(b"u1 a b c d e\nu2 \xffx y\n"))
    assert error.line == 2 and "not valid UTF-8" in str(error)


def test_unknown_format(write: WriteFile) -> None:
    assert "unknown format 'xlsx'" in str(raises(write("a,b\n"), ParseOptions(format="xlsx")))


def test_parquet_requested_for_text(write: WriteFile) -> None:
    assert "not a Parquet file" in str(raises(write("a,b\nc,d\n"), ParseOptions(format="parquet")))


def test_corrupt_parquet(write: WriteFile) -> None:
    assert "could not read the Parquet file" in str(raises(write(b"PAR1" + b"\x00" * 64 + b"PAR1")))


def test_parquet_missing_weight_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "u.parquet"
    pq.write_table(pa.table({"user": ["a", "b", "c"], "item": ["x", "y", "z"], "weight": [1.0, None, 2.0]}), path)
    error = raises(path)
    assert str(error) == "row 2, column 'weight': the weight is missing"
    assert error.row == 2


def test_single_value_lines(write: WriteFile) -> None:
    assert "holds a single value" in str(raises(write("a\nb\nc\n")))


def test_adjacency_without_any_items(write: WriteFile) -> None:
    assert "no item ids" in str(raises(write("u1\nu2\nu3 \n"), ParseOptions(format="adjacency")))


def test_random_bytes_only_ever_raise_ingest_error(write: WriteFile) -> None:
    # Whatever arrives, the caller sees a parse or an IngestError, never an internal exception.
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b'ab1,\t :\n\n\r"-.e\xff\x00', dtype=np.uint8)
    for trial in range(200):
        content = rng.choice(alphabet, size=int(rng.integers(0, 80))).tobytes()
        fmt = ["auto", "csv", "tsv", "movielens", "adjacency"][trial % 5]
        with contextlib.suppress(IngestError):
            parse_file(write(content), ParseOptions(format=fmt))


def test_unclosed_quote(write: WriteFile) -> None:
    error = raises(write('user,item,rating\nu1,i1,1\nu2,"i2,3\nu3,i3,4\n'))
    assert error.line == 3 and "not closed" in str(error)


def test_nul_in_id(write: WriteFile) -> None:
    # numpy unicode arrays would silently turn "a\0" into "a": refuse it instead.
    error = raises(write(b"user,item\nu1,a\nu2,a\x00\n"))
    assert str(error) == "line 3, column 'item': the item id contains a NUL character"


def test_lone_carriage_returns_end_lines(write: WriteFile) -> None:
    assert raises(write("user,item,rating\ru1,i1,1\ru2,i2,x\r")).line == 3
