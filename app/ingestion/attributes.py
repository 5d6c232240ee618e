"""Item (and user) attribute uploads (csv, tsv, ndjson, parquet) read into an AttributeTable with typed columns.

One row per item (or user): an id column, then any number of attribute columns. Kinds are inferred per column
(true/false words: boolean; numbers: numeric; other text: categorical; JSON or parquet lists: tags),
kept from the stored schema once a column exists, and declared for multi-valued text columns
(`multi_valued`, values split on `separator`). An empty cell or a JSON null means "no value".
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from app.ingestion.errors import ARROW_ERRORS, IngestError, RowLimitExceeded
from app.recsys import attributes
from app.recsys.filter_expr import BOOLEAN, CATEGORICAL, NUMERIC, TAGS

ATTRIBUTE_FORMATS = ("auto", "csv", "tsv", "ndjson", "parquet")
ID_COLUMNS = {"items": ("item_id", "itemId", "item", "id", "movieId"), "users": ("user_id", "userId", "user", "id")}
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}
MAX_NAME = 100


@dataclass(frozen=True)
class AttributeOptions:
    """How to read an attribute upload (the form fields of POST /v1/datasets/{id}/items or /users)."""

    format: str = "auto"
    kind: Literal["items", "users"] = "items"  # what the rows are: picks the default id column
    id_column: str | None = None
    multi_valued: frozenset[str] = frozenset()
    separator: str = "|"


def _format(path: Path, filename: str | None, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    suffix = (filename or path.name).lower().rsplit(".", 1)[-1]
    by_suffix = {"csv": "csv", "tsv": "tsv", "tab": "tsv", "ndjson": "ndjson", "jsonl": "ndjson", "json": "ndjson"}
    if suffix in by_suffix | {"parquet": "parquet"}:
        return {**by_suffix, "parquet": "parquet"}[suffix]
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "ndjson"
    first = head.split(b"\n", 1)[0]
    return "tsv" if b"\t" in first and b"," not in first else "csv"


def _read_text_table(path: Path, delimiter: str) -> pa.Table:
    with path.open("r", encoding="utf-8", errors="strict", newline="") as fh:
        header = next(csv.reader([fh.readline()], delimiter=delimiter), [])
    if not header or not any(h.strip() for h in header):
        raise IngestError("the file is empty: the first line names the columns (an id column, then attributes)")
    names = [h.strip() for h in header]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise IngestError(f"column names repeat: {', '.join(duplicates)}", line=1)
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        # Everything is read as text and typed here, so "007" stays an id and a kind is chosen per column.
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, null_values=[""], strings_can_be_null=True
        ),
    )
    return table


def read_table(path: Path, fmt: str) -> pa.Table:
    """The upload as an Arrow table (IngestError for what Arrow cannot read)."""
    try:
        if fmt in ("csv", "tsv"):
            return _read_text_table(path, "," if fmt == "csv" else "\t")
        if fmt == "ndjson":
            return pajson.read_json(path)
        return pq.read_table(path)
    except UnicodeDecodeError as exc:
        raise IngestError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except ARROW_ERRORS as exc:
        raise IngestError(f"cannot read the file as {fmt}: {exc}") from exc


def _id_column(table: pa.Table, wanted: str | None, kind: str) -> str:
    names = table.column_names
    if wanted is not None:
        if wanted not in names:
            raise IngestError(f"no column {wanted!r} (id_column); the columns are {', '.join(names)}")
        return wanted
    for name in ID_COLUMNS[kind]:
        if name in names:
            return name
    if not names:
        raise IngestError("the file has no columns")
    return str(names[0])


def _first_bad(strings: list[str | None], ok: set[str] | None) -> int:
    """Index of the first value that does not parse as a number (ok None) or a word of `ok`."""
    for j, s in enumerate(strings):
        if s is None:
            continue
        if ok is not None:
            if s.strip().lower() not in ok:
                return j
        else:
            try:
                if not math.isfinite(float(s)):  # "nan", "inf": words in a text column, not numbers
                    return j
            except ValueError:
                return j
    return -1


class _ColumnReader:
    """Turns one Arrow column into an attributes.Column of a given or inferred kind."""

    def __init__(self, name: str, options: AttributeOptions, line_of: int) -> None:
        self.name = name
        self.options = options
        self.line_offset = line_of  # rows are reported as file lines (csv/tsv: +2) or 1-based rows

    def fail(self, message: str, j: int) -> IngestError:
        return IngestError(message, line=j + self.line_offset, column=self.name)

    def read(self, array: pa.ChunkedArray, kind: str | None) -> attributes.Column:
        typ = array.type
        if pa.types.is_struct(typ) or pa.types.is_map(typ):
            raise IngestError("nested objects are not attribute values (use a list for tags)", column=self.name)
        if pa.types.is_list(typ) or pa.types.is_large_list(typ):
            if kind not in (None, TAGS):
                raise IngestError(f"holds lists, but {self.name} is {kind}", column=self.name)
            lists = array.to_pylist()
            return attributes.tags([None if v is None else [_text(x) for x in v if x is not None] for v in lists])
        if pa.types.is_null(typ):
            return attributes.empty(kind or CATEGORICAL, len(array))
        wants_tags = kind == TAGS or (kind is None and self.name in self.options.multi_valued)
        if wants_tags:
            sep = self.options.separator
            strings = array.cast(pa.string()).to_pylist()
            return attributes.tags(
                [None if s is None else [t.strip() for t in s.split(sep) if t.strip()] for s in strings]
            )
        if pa.types.is_boolean(typ):
            if kind not in (None, BOOLEAN):
                raise IngestError(f"holds true/false, but {self.name} is {kind}", column=self.name)
            return attributes.boolean(array.to_pylist())
        if pa.types.is_integer(typ) or pa.types.is_floating(typ):
            if kind == CATEGORICAL:
                return attributes.categorical([None if v is None else _text(v) for v in array.to_pylist()])
            if kind not in (None, NUMERIC):
                raise IngestError(f"holds numbers, but {self.name} is {kind}", column=self.name)
            return self._numeric(array.cast(pa.float64()).to_pylist())
        strings = array.cast(pa.string()).to_pylist()
        present = any(s is not None for s in strings)
        if kind == BOOLEAN:
            bad = _first_bad(strings, TRUE_WORDS | FALSE_WORDS)
            if bad >= 0:
                raise self.fail(f"{strings[bad]!r} is not true/false ({self.name} is boolean)", bad)
            return attributes.boolean([None if s is None else s.strip().lower() in TRUE_WORDS for s in strings])
        if kind is None and present and _first_bad(strings, {"true", "false"}) < 0:
            return attributes.boolean([None if s is None else s.strip().lower() == "true" for s in strings])
        if kind == NUMERIC or (kind is None and present and _first_bad(strings, None) < 0):
            return self._numeric(strings)
        return attributes.categorical(strings)

    def _numeric(self, values: list[object]) -> attributes.Column:
        out = np.full(len(values), np.nan)
        for j, v in enumerate(values):
            if v is None:
                continue
            try:
                number = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise self.fail(f"{v!r} is not a number ({self.name} is numeric)", j) from None
            if not np.isfinite(number):
                raise self.fail(f"{v!r} is not a finite number", j)
            out[j] = number
        return attributes.numeric(out)


def _text(value: object) -> str:
    """A JSON/parquet scalar as the text a filter compares with (1.0 -> "1", True -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_attributes(
    path: Path,
    options: AttributeOptions,
    *,
    filename: str | None,
    schema: Mapping[str, str],
    max_rows: int,
) -> attributes.AttributeTable:
    """Read an upload into a table; columns already in `schema` keep their kind (IngestError otherwise)."""
    fmt = _format(path, filename, options.format)
    table = read_table(path, fmt)
    if table.num_rows > max_rows:
        raise RowLimitExceeded(table.num_rows, max_rows)
    if table.num_rows == 0:
        raise IngestError(f"the file has no rows: one row per {options.kind[:-1]} is expected, after the header")
    id_name = _id_column(table, options.id_column, options.kind)
    line_offset = 2 if fmt in ("csv", "tsv") else 1
    ids_array = table.column(id_name)
    id_type = ids_array.type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type) or pa.types.is_integer(id_type)):
        raise IngestError(f"ids must be strings or integers, not {ids_array.type}", column=id_name)
    ids = ids_array.cast(pa.string())
    if ids.null_count:
        j = int(pc.index(pc.is_null(ids), True).as_py())
        raise IngestError("the id is empty", line=j + line_offset, column=id_name)
    id_values = np.array(ids.to_pylist(), dtype=str)
    unique, first, counts = np.unique(id_values, return_index=True, return_counts=True)
    if unique.shape[0] < id_values.shape[0]:
        repeated = unique[counts > 1][0]
        j = int(np.flatnonzero(id_values == repeated)[1])
        raise IngestError(f"{options.kind[:-1]} {str(repeated)!r} appears twice", line=j + line_offset, column=id_name)
    columns: dict[str, attributes.Column] = {}
    for name in table.column_names:
        if name == id_name:
            continue
        if not name or len(name) > MAX_NAME or "`" in name:
            raise IngestError(f"column names are 1..{MAX_NAME} characters without backquotes: {name!r}")
        reader = _ColumnReader(name, options, line_offset)
        columns[name] = reader.read(table.column(name), schema.get(name))
    return attributes.AttributeTable(id_values, columns)
