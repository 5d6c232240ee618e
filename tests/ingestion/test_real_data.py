"""The shared benchmark datasets parse to their published sizes (skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ingestion import ParseOptions, parse_file

from .conftest import DATA_DIR

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"shared benchmark data not found at {DATA_DIR}"),
]


def data_file(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{relative} not found under {DATA_DIR}")
    return path


def test_ml_100k() -> None:
    parsed = parse_file(data_file("ml-100k/u.data"))
    assert (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)) == (943, 1682, 100_000)
    assert parsed.stats["format"] == "tsv" and parsed.stats["has_header"] is False
    assert parsed.timestamps is not None
    assert set(parsed.weights.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml_latest_small() -> None:
    parsed = parse_file(data_file("ml-latest-small/ratings.csv"))
    assert (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)) == (610, 9724, 100_836)
    assert parsed.stats["columns"] == {
        "user": "userId",
        "item": "movieId",
        "weight": "rating",
        "timestamp": "timestamp",
    }


def test_hetrec_lastfm() -> None:
    parsed = parse_file(data_file("hetrec-lastfm/user_artists.dat"))
    assert (len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)) == (1892, 17632, 92_834)
    assert parsed.stats["format"] == "tsv"
    assert parsed.stats["columns"] == {
        "user": "userID",
        "item": "artistID",
        "weight": "weight",
        "timestamp": None,
    }


def test_ml_1m_implicit_adjacency() -> None:
    parsed = parse_file(data_file("ml-1m-implicit/train.txt"), ParseOptions(format="adjacency"))
    assert len(parsed.users) == 590_733
    assert len(parsed.user_ids) == 6039
    assert parse_file(data_file("ml-1m-implicit/train.txt")).stats["format"] == "adjacency"  # auto
