"""The public entry point: parse an uploaded interaction file into dense arrays."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from app.ingestion.adjacency import read_adjacency
from app.ingestion.convert import check_ids, to_timestamps, to_weights
from app.ingestion.dataset import ParsedDataset
from app.ingestion.errors import ARROW_ERRORS, IngestError, RowError, RowLimitExceeded
from app.ingestion.formats import Layout, detect_layout
from app.ingestion.groups import Groups, entity_groups
from app.ingestion.indexing import encode, merge_duplicates
from app.ingestion.options import ParseOptions
from app.ingestion.readers import RawInteractions, read_parquet, read_table
from app.ingestion.stats import summarise


def parse_file(
    path: str | os.PathLike[str],
    options: ParseOptions | None = None,
    *,
    filename: str | None = None,
    max_rows: int | None = None,
) -> ParsedDataset:
    """Read an upload (format detected or given), validate it, dense-index ids and merge duplicates.

    `filename` is the name the user uploaded under; its extension helps detection when the file
    on disk has none. Every problem with the file's contents raises IngestError; more than
    `max_rows` interactions raises RowLimitExceeded (one of them) before any indexing work.
    """
    options = options or ParseOptions()
    layout = detect_layout(path, options, filename)
    try:
        raw = _read(path, layout, options)
        if max_rows is not None and len(raw.users) > max_rows:
            raise RowLimitExceeded(len(raw.users), max_rows)
        try:
            return _build(raw, options, format=layout.format, has_header=layout.has_header)
        except RowError as exc:
            # Checks report 0-based rows; the reader knows which line (or Parquet row) that is.
            message = exc.message
            if exc.earlier_row is not None:
                where = ", ".join(f"{kind} {at}" for kind, at in raw.locate(exc.earlier_row).items())
                message += f" ({where})"
            raise IngestError(message, column=raw.labels.get(exc.role), **raw.locate(exc.row)) from None
    except ARROW_ERRORS as exc:
        # Safety net: anything Arrow rejects that the checks did not name more precisely.
        raise IngestError(f"could not read the file: {exc}") from None


def _read(path: str | os.PathLike[str], layout: Layout, options: ParseOptions) -> RawInteractions:
    if layout.format == "parquet":
        return read_parquet(path, options)
    if layout.format == "adjacency":
        return read_adjacency(path, layout, options)
    raw = read_table(path, layout, options)
    raw.extra["delimiter"] = layout.delimiter
    return raw


def _build(raw: RawInteractions, options: ParseOptions, **read_stats: object) -> ParsedDataset:
    n_rows = len(raw.users)
    if n_rows == 0:
        raise IngestError("the file has a header but no data rows" if read_stats["has_header"] else "the file is empty")
    check_ids(raw.users, "user")
    check_ids(raw.items, "item")
    labels = {"user": raw.user_groups, "item": raw.item_groups}
    for role, column in labels.items():
        if column is not None:
            check_ids(column, f"{role}_group", "label")
    weights = to_weights(raw.weights, n_rows)
    timestamps = to_timestamps(raw.timestamps)
    users, items = raw.users, raw.items
    kept = None  # which of the file's rows are left, when min_weight dropped some
    dropped = 0
    if options.min_weight is not None:
        keep = weights >= options.min_weight
        dropped = int(n_rows - np.count_nonzero(keep))
        if dropped == n_rows:
            raise IngestError(
                f"no rows left: all {n_rows:,} weights are below min_weight={options.min_weight:g} "
                f"(the largest is {weights.max():g})"
            )
        if dropped:
            mask = pa.array(keep)
            users, items = users.filter(mask), items.filter(mask)
            weights = weights[keep]
            timestamps = timestamps[keep] if timestamps is not None else None
            # Dropped rows say nothing about groups either.
            labels = {role: col.filter(mask) if col is not None else None for role, col in labels.items()}
            kept = keep
    user_codes, user_ids = encode(users, "user")
    item_codes, item_ids = encode(items, "item")
    indexed = merge_duplicates(user_codes, user_ids, item_codes, item_ids, weights, timestamps)
    for role, ids in (("user", indexed.user_ids), ("item", indexed.item_ids)):
        if len(ids) < 2:
            raise IngestError(
                f"only one {role} ({str(ids[0])!r})"
                f"{' after min_weight filtering' if dropped else ''}: a recommender needs at least two"
            )
    groups: dict[str, Groups] = {}
    for role, codes, ids in (("user", user_codes, user_ids), ("item", item_codes, item_ids)):
        column = labels[role]
        if column is not None:
            groups[role] = entity_groups(codes, ids, column, f"{role}_group", kept)
    stats = summarise(
        indexed,
        {f"n_{role}_groups": len(found.names) for role, found in groups.items()},
        **read_stats,
        columns=raw.columns,
        rows_read=n_rows,
        rows_dropped_min_weight=dropped,
        **raw.extra,
    )
    return ParsedDataset(
        user_ids=indexed.user_ids,
        item_ids=indexed.item_ids,
        users=indexed.users,
        items=indexed.items,
        weights=indexed.weights,
        timestamps=indexed.timestamps,
        stats=stats,
        user_groups=groups["user"].codes if "user" in groups else None,
        item_groups=groups["item"].codes if "item" in groups else None,
        user_group_names=groups["user"].names if "user" in groups else None,
        item_group_names=groups["item"].names if "item" in groups else None,
    )
