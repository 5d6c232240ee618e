"""The JSON-serialisable summary of a parsed upload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.ingestion.indexing import Indexed


def degree_stats(indices: np.ndarray, n: int) -> dict[str, float]:
    """min / median / max interactions per user (or item)."""
    degree = np.bincount(indices, minlength=n)
    return {"min": int(degree.min()), "median": float(np.median(degree)), "max": int(degree.max())}


def summarise(indexed: Indexed, group_counts: dict[str, int] | None = None, **read_stats: Any) -> dict[str, Any]:
    """Stats of the final dataset, after the reader's own figures (format, columns, rows_read...).

    group_counts: {"n_user_groups": ..., "n_item_groups": ...} for the group columns the file has.
    """
    n_users, n_items, nnz = len(indexed.user_ids), len(indexed.item_ids), len(indexed.users)
    weights = indexed.weights
    stats: dict[str, Any] = {
        **read_stats,
        "duplicates_merged": indexed.duplicates_merged,
        "n_users": n_users,
        "n_items": n_items,
        **(group_counts or {}),
        "n_interactions": nnz,
        "density": nnz / (n_users * n_items),
        "weight": {
            "min": float(weights.min()),
            "max": float(weights.max()),
            "mean": float(weights.mean(dtype=np.float64)),
        },
        "user_degree": degree_stats(indexed.users, n_users),
        "item_degree": degree_stats(indexed.items, n_items),
    }
    if indexed.timestamps is not None:
        first, last = int(indexed.timestamps.min()), int(indexed.timestamps.max())
        stats["timestamp"] = {"min": first, "max": last, "min_iso": _iso(first), "max_iso": _iso(last)}
    return stats


def _iso(seconds: int) -> str | None:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None  # outside what datetime can show; the integer is still reported
