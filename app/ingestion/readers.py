"""Per-format readers: each returns the raw columns of an upload as Arrow arrays."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from app.ingestion.columns import resolve_columns
from app.ingestion.diagnose import FOLD_BYTE, line_of_row, scan_table
from app.ingestion.errors import ARROW_ERRORS, IngestError
from app.ingestion.formats import Layout
from app.ingestion.options import ParseOptions

FOLD_BLOCK = 4 << 20


@dataclass
class RawInteractions:
    """One entry per row of the file: ids and group labels as strings, weight and timestamp as read."""

    users: pa.ChunkedArray
    items: pa.ChunkedArray
    weights: pa.ChunkedArray | None
    timestamps: pa.ChunkedArray | None
    columns: dict[str, str | int | None]  # the columns used, for stats
    labels: dict[str, str]  # role -> column label, for error messages
    locate: Callable[[int], dict[str, int | None]]  # 0-based row -> IngestError location keywords
    extra: dict[str, Any] = field(default_factory=dict)  # format-specific stats
    user_groups: pa.ChunkedArray | None = None  # group label of the row's user, when the file has them
    item_groups: pa.ChunkedArray | None = None


def read_table(path: str | os.PathLike[str], layout: Layout, options: ParseOptions) -> RawInteractions:
    """Read a csv, tsv, space-separated or MovieLens '::' file with Arrow's multithreaded CSV reader."""
    assert layout.delimiter is not None
    columns = resolve_columns(layout.fields if layout.has_header else None, len(layout.fields), options)
    names = [f"f{i}" for i in range(len(layout.fields))]
    used = {role: col for role, col in columns.by_role().items() if col is not None}
    # Ids and group labels stay strings ("007" is not 7); timestamps are strings until we know
    # integer or ISO 8601.
    types = {names[col.index]: pa.float64() if role == "weight" else pa.string() for role, col in used.items()}
    folded = layout.delimiter == "::"
    read_options = pv.ReadOptions(column_names=names, skip_rows=layout.header_line)
    parse_options = pv.ParseOptions(
        delimiter=FOLD_BYTE.decode() if folded else layout.delimiter,
        quote_char=False if folded else '"',
        ignore_empty_lines=True,
    )
    convert_options = pv.ConvertOptions(
        column_types=types,
        include_columns=[names[col.index] for col in used.values()],
        null_values=[],  # an empty weight is an error, not a silent null
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        with open(path, "rb") as raw:
            source: BinaryIO = io.BufferedReader(_ColonFold(raw), FOLD_BLOCK) if folded else raw
            table = pv.read_csv(
                source,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
    except ARROW_ERRORS as exc:
        error = scan_table(path, layout, columns)
        raise (error or IngestError(f"could not read the file as {layout.format}: {exc}")) from None

    def column(role: str) -> pa.ChunkedArray | None:
        col = used.get(role)
        return table.column(names[col.index]) if col is not None else None

    users, items = column("user"), column("item")
    assert users is not None and items is not None
    return RawInteractions(
        users=users,
        items=items,
        weights=column("weight"),
        timestamps=column("timestamp"),
        columns=columns.stats(),
        extra=columns.report(),
        labels={role: col.label for role, col in used.items()},
        locate=lambda row: {"line": line_of_row(path, layout, row)},
        user_groups=column("user_group"),
        item_groups=column("item_group"),
    )


def read_parquet(path: str | os.PathLike[str], options: ParseOptions) -> RawInteractions:
    """Read the needed columns of a Parquet file; ids of any type become strings."""
    try:
        schema = pq.read_schema(path)
        columns = resolve_columns(schema.names, len(schema.names), options)
        used = {role: col for role, col in columns.by_role().items() if col is not None}
        table = pq.read_table(path, columns=[col.label for col in used.values()])
    except (*ARROW_ERRORS, OSError) as exc:
        raise IngestError(f"could not read the Parquet file: {exc}") from None
    if table.num_rows == 0:
        raise IngestError("the Parquet file has no rows")

    def column(role: str) -> pa.ChunkedArray | None:
        col = used.get(role)
        return table.column(col.label) if col is not None else None

    def strings(role: str, what: str) -> pa.ChunkedArray | None:
        values = column(role)
        return _as_strings(values, used[role].label, what) if values is not None else None

    users, items = strings("user", "ids"), strings("item", "ids")
    assert users is not None and items is not None
    return RawInteractions(
        users=users,
        items=items,
        weights=column("weight"),
        timestamps=column("timestamp"),
        columns=columns.stats(),
        extra=columns.report(),
        labels={role: col.label for role, col in used.items()},
        locate=lambda row: {"row": row + 1},
        user_groups=strings("user_group", "group labels"),
        item_groups=strings("item_group", "group labels"),
    )


def _as_strings(ids: pa.ChunkedArray, label: str, what: str) -> pa.ChunkedArray:
    """Ids (or group labels) of any string or integer type as strings."""
    if pa.types.is_dictionary(ids.type):
        ids = ids.cast(ids.type.value_type)
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        return ids
    if pa.types.is_floating(ids.type):
        raise IngestError(f"{what} must be strings or integers, not {ids.type} numbers", column=label)
    try:
        return ids.cast(pa.string())
    except ARROW_ERRORS as exc:
        raise IngestError(f"cannot use {ids.type} values as {what}: {exc}", column=label) from None


class _ColonFold(io.RawIOBase):
    """A read-only stream of a file with every '::' replaced by one byte, so Arrow can split on it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._carry = b""  # trailing ':' run held back: it may pair with a ':' in the next block
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            block = self._raw.read(FOLD_BLOCK)
            if not block:
                if not self._carry:
                    return 0
                block, self._carry = self._carry, b""
            else:
                block = self._carry + block
                # Cut where the previous byte is not ':', so no colon run straddles two blocks.
                cut = len(block.rstrip(b":"))
                block, self._carry = block[:cut], block[cut:]
            self._out = memoryview(block.replace(b"::", FOLD_BYTE))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n
