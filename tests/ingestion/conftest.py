"""Shared helpers for the ingestion tests: tiny upload files written under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.ingestion import ParsedDataset

WriteFile = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteFile:
    """write(content, name="upload.raw"): a file holding str (UTF-8) or bytes content."""

    def _write(content: str | bytes, name: str = "upload.raw") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return _write


def triples(parsed: ParsedDataset) -> dict[tuple[str, str], float]:
    """{(user id, item id): weight} of a parsed dataset."""
    return {
        (str(parsed.user_ids[u]), str(parsed.item_ids[i])): float(w)
        for u, i, w in zip(parsed.users, parsed.items, parsed.weights, strict=True)
    }


def stamps(parsed: ParsedDataset) -> dict[tuple[str, str], int]:
    """{(user id, item id): timestamp} of a parsed dataset with timestamps."""
    assert parsed.timestamps is not None
    return {
        (str(parsed.user_ids[u]), str(parsed.item_ids[i])): int(t)
        for u, i, t in zip(parsed.users, parsed.items, parsed.timestamps, strict=True)
    }
