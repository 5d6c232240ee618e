"""The parser's result: dense, merged interaction arrays plus the external ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ParsedDataset:
    """Interactions with dense int32 user/item indices; ids map indices back to the file's strings."""

    user_ids: np.ndarray  # numpy unicode, external id per dense user index, in order of first appearance
    item_ids: np.ndarray  # same for items
    users: np.ndarray  # int32 dense user index per interaction (after merging duplicates)
    items: np.ndarray  # int32
    weights: np.ndarray  # float32; 1.0 without a weight column; duplicate (user, item) weights summed
    timestamps: np.ndarray | None  # int64 seconds, max over merged duplicates; None without a column
    stats: dict[str, Any]  # JSON-serialisable summary, see app.ingestion.stats
