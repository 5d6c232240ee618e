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
    # Group (community) labels, None without a group column. user_groups[u] is the int64 code of
    # user u's group (aligned with user_ids); codes number the labels in order of first appearance,
    # and user_group_names[code] is the label as written in the file (numpy unicode, "007" stays "007").
    user_groups: np.ndarray | None = None
    item_groups: np.ndarray | None = None
    user_group_names: np.ndarray | None = None
    item_group_names: np.ndarray | None = None
