"""The shared benchmark datasets parse to their published sizes (skipped where absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.ingestion import ParseOptions, parse_file

pytestmark = pytest.mark.data


@pytest.fixture
def data_file(shared_data: Path) -> Callable[[str], Path]:
    """data_file("ml-100k/u.data"): that file of the shared data, or a skip where this set is absent."""

    def find(relative: str) -> Path:
        path = shared_data / relative
        if not path.is_file():
            pytest.skip(f"{relative} not found under {shared_data}")
        return path

    return find


def test_ml_100k(data_file: Callable[[str], Path]) -> None:
    parsed = parse_file(data_file("ml-100k/u.data"))
    assert (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)) == (943, 1682, 100_000)
    assert parsed.stats["format"] == "tsv" and parsed.stats["has_header"] is False
    assert parsed.timestamps is not None
    assert set(parsed.weights.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml_latest_small(data_file: Callable[[str], Path]) -> None:
    parsed = parse_file(data_file("ml-latest-small/ratings.csv"))
    assert (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)) == (610, 9724, 100_836)
    assert parsed.stats["columns"] == {
        "user": "userId",
        "item": "movieId",
        "weight": "rating",
        "timestamp": "timestamp",
    }


def test_hetrec_lastfm(data_file: Callable[[str], Path]) -> None:
    parsed = parse_file(data_file("hetrec-lastfm/user_artists.dat"))
    assert (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)) == (1892, 17632, 92_834)
    assert parsed.stats["format"] == "tsv"
    assert parsed.stats["columns"] == {
        "user": "userID",
        "item": "artistID",
        "weight": "weight",
        "timestamp": None,
    }


def test_ml_1m_implicit_adjacency(data_file: Callable[[str], Path]) -> None:
    parsed = parse_file(data_file("ml-1m-implicit/train.txt"), ParseOptions(format="adjacency"))
    assert len(parsed.users) == 590_733
    assert len(parsed.user_ids) == 6039
    assert parse_file(data_file("ml-1m-implicit/train.txt")).stats["format"] == "adjacency"  # auto
