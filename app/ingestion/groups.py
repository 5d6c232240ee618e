"""Group (community) labels per user and per item, read from the rows and checked for consistency."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from app.ingestion.columns import describe
from app.ingestion.errors import RowError
from app.ingestion.indexing import encode


@dataclass(frozen=True)
class Groups:
    """The group of every user (or item), dense-encoded, and the label behind each code."""

    codes: np.ndarray  # int64 group code per dense entity index
    names: np.ndarray  # numpy unicode label per group code, in order of first appearance


def entity_groups(
    entity_codes: np.ndarray,
    entity_ids: np.ndarray,
    labels: pa.ChunkedArray,
    role: str,
    kept: np.ndarray | None = None,
) -> Groups:
    """The group of each entity from the labels on its rows (`role` is "user_group" or "item_group").

    entity_codes and labels hold one entry per row; `kept` is the mask of the file's rows they are,
    when some were dropped, so a RowError names the file's row. An entity whose rows disagree raises
    a RowError at the first row contradicting an earlier one (`earlier_row`: the entity's first row).
    """
    label_codes, names = encode(labels, describe(role), "labels")
    # Scatter any row's label to its entity, then check every row against it: linear, no sort.
    codes = np.empty(len(entity_ids), dtype=np.int64)
    codes[entity_codes] = label_codes
    if not np.array_equal(codes[entity_codes], label_codes):
        _raise_conflict(entity_codes, entity_ids, label_codes, names, role, kept)
    # Every entity has a row, and labels are numbered in row order: so a label's first row is its
    # entity's first row, and the codes follow the entities' first appearance too.
    return Groups(codes=codes, names=names)


def _raise_conflict(
    entity_codes: np.ndarray,
    entity_ids: np.ndarray,
    label_codes: np.ndarray,
    names: np.ndarray,
    role: str,
    kept: np.ndarray | None,
) -> None:
    """Error path only: find the first row whose label differs from its entity's first row."""
    _, first_row = np.unique(entity_codes, return_index=True)  # entities are 0..n-1, all present
    expected = label_codes[first_row][entity_codes]
    row = int(np.argmax(expected != label_codes))
    entity = int(entity_codes[row])
    kind = role.removesuffix("_group")
    message = (
        f"each {kind} has one group, but the {kind} {str(entity_ids[entity])!r} is in group "
        f"{str(names[label_codes[row]])!r} here and in group {str(names[expected[row]])!r} on its first row"
    )
    earlier = int(first_row[entity])
    if kept is not None:  # rows of the filtered arrays -> rows of the file
        file_rows = np.flatnonzero(kept)
        row, earlier = int(file_rows[row]), int(file_rows[earlier])
    raise RowError(row, role, message, earlier_row=earlier)
