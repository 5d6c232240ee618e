"""Item attributes as typed columns: merged by upsert, saved without pickle, aligned to a model's catalogue.

Four kinds of column, each with a way to say "no value":
  categorical  codes (int32, -1: none) into a vocabulary of strings
  tags         several strings per row, as (row, code) pairs sorted by row: a row without pairs has none
  numeric      float64, NaN: none
  boolean      int8: 1, 0, -1 (none)

On disk (attributes.npz + attributes.json, written by the caller's publishing step): `ids`, then per
column j `c{j}_codes` / `c{j}_vocab` / `c{j}_rows` / `c{j}_values` as its kind needs; the json holds
the schema (names and kinds in column order), so a loader needs nothing else.

Pure: numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.recsys.filter_expr import BOOLEAN, CATEGORICAL, ID, NUMERIC, TAGS, Columns, Value

KINDS = (CATEGORICAL, TAGS, NUMERIC, BOOLEAN)
ARRAYS = "attributes.npz"
META = "attributes.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Column:
    """One attribute over the rows of a table (see the module docstring for each kind's arrays)."""

    kind: str
    codes: np.ndarray | None = None  # categorical: per row; tags: per pair
    vocab: np.ndarray | None = None  # categorical, tags
    rows: np.ndarray | None = None  # tags: the row of each pair
    values: np.ndarray | None = None  # numeric (float64), boolean (int8)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.codes, self.vocab, self.rows, self.values) if a is not None)


def categorical(strings: list[str | None]) -> Column:
    """A categorical column from one optional string per row."""
    present = [s for s in strings if s is not None]
    vocab = np.array(sorted(set(present)), dtype=str) if present else np.zeros(0, dtype="<U1")
    lookup = {v: i for i, v in enumerate(vocab.tolist())}
    codes = np.array([-1 if s is None else lookup[s] for s in strings], dtype=np.int32)
    return Column(CATEGORICAL, codes=codes, vocab=vocab)


def tags(lists: list[list[str] | None]) -> Column:
    """A tags column from a list of strings per row (None or [] for none; repeats count once)."""
    pairs = sorted({(r, t) for r, row in enumerate(lists) if row for t in row})
    vocab = np.array(sorted({t for _, t in pairs}), dtype=str) if pairs else np.zeros(0, dtype="<U1")
    lookup = {v: i for i, v in enumerate(vocab.tolist())}
    rows = np.array([r for r, _ in pairs], dtype=np.int64)
    codes = np.array([lookup[t] for _, t in pairs], dtype=np.int32)
    return Column(TAGS, codes=codes, vocab=vocab, rows=rows)


def numeric(values: np.ndarray) -> Column:
    return Column(NUMERIC, values=np.asarray(values, dtype=np.float64))


def boolean(values: list[bool | None]) -> Column:
    return Column(BOOLEAN, values=np.array([-1 if v is None else int(v) for v in values], dtype=np.int8))


def empty(kind: str, n: int) -> Column:
    """A column of n rows without values."""
    if kind == CATEGORICAL:
        return Column(kind, codes=np.full(n, -1, np.int32), vocab=np.zeros(0, dtype="<U1"))
    if kind == TAGS:
        return Column(kind, codes=np.zeros(0, np.int32), vocab=np.zeros(0, dtype="<U1"), rows=np.zeros(0, np.int64))
    if kind == NUMERIC:
        return Column(kind, values=np.full(n, np.nan))
    return Column(kind, values=np.full(n, -1, np.int8))


def _take(column: Column, positions: np.ndarray) -> Column:
    """The column's values at `positions` (-1: no value), as a column over len(positions) rows."""
    n, missing = positions.shape[0], positions < 0
    safe = np.where(missing, 0, positions)
    if column.kind == TAGS:
        assert column.rows is not None and column.codes is not None
        # Each source row maps to at most one target row (positions come from an id lookup).
        target = np.full(int(positions.max(initial=-1)) + 1, -1, dtype=np.int64)
        target[positions[~missing]] = np.flatnonzero(~missing)
        inside = column.rows < target.shape[0]
        rows = np.where(inside, target[np.where(inside, column.rows, 0)], -1)
        keep = rows >= 0
        order = np.argsort(rows[keep], kind="stable")
        return Column(TAGS, codes=column.codes[keep][order], vocab=column.vocab, rows=rows[keep][order])
    if column.kind == CATEGORICAL:
        assert column.codes is not None
        codes = column.codes[safe] if column.codes.shape[0] else np.full(n, -1, np.int32)
        return Column(CATEGORICAL, codes=np.where(missing, -1, codes).astype(np.int32), vocab=column.vocab)
    assert column.values is not None
    none = np.nan if column.kind == NUMERIC else -1
    values = column.values[safe] if column.values.shape[0] else np.full(n, none, column.values.dtype)
    return Column(column.kind, values=np.where(missing, none, values).astype(column.values.dtype))


def _overwrite(old: Column, n: int, new: Column, at: np.ndarray) -> Column:
    """`old` (over n rows, padded with no value) with rows `at` replaced by `new`'s rows, in order."""
    if old.kind == TAGS:
        assert old.rows is not None and old.codes is not None and old.vocab is not None
        assert new.rows is not None and new.codes is not None and new.vocab is not None
        vocab = np.union1d(old.vocab, new.vocab)
        replaced = np.zeros(n, dtype=bool)
        replaced[at] = True
        keep = ~replaced[old.rows]
        rows = np.concatenate([old.rows[keep], at[new.rows]])
        codes = np.concatenate(
            [
                _recode(old.codes[keep], np.searchsorted(vocab, old.vocab)),
                _recode(new.codes, np.searchsorted(vocab, new.vocab)),
            ]
        )
        order = np.lexsort((codes, rows))
        return Column(TAGS, codes=codes[order], vocab=vocab, rows=rows[order])
    grown = _take(old, np.concatenate([np.arange(old_rows(old)), np.full(n - old_rows(old), -1)]).astype(np.int64))
    if old.kind == CATEGORICAL:
        assert grown.codes is not None and old.vocab is not None and new.vocab is not None and new.codes is not None
        vocab = np.union1d(old.vocab, new.vocab)
        codes = _recode(grown.codes, np.searchsorted(vocab, old.vocab))
        codes[at] = _recode(new.codes, np.searchsorted(vocab, new.vocab))
        # Values no row holds any more leave the vocabulary.
        used = np.unique(codes[codes >= 0])
        remap = np.full(vocab.shape[0], -1, dtype=np.int64)
        remap[used] = np.arange(used.shape[0])
        return Column(CATEGORICAL, codes=_recode(codes, remap), vocab=vocab[used])
    assert grown.values is not None and new.values is not None
    values = grown.values.copy()
    values[at] = new.values
    return Column(old.kind, values=values)


def _recode(codes: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """Codes (-1: none) through mapping[code] (a code's new number), as int32."""
    if mapping.shape[0] == 0:
        return np.full(codes.shape[0], -1, dtype=np.int32)
    return np.where(codes >= 0, mapping[np.maximum(codes, 0)], -1).astype(np.int32)


def old_rows(column: Column) -> int:
    """Rows a non-tags column covers."""
    array = column.codes if column.kind == CATEGORICAL else column.values
    return 0 if array is None else int(array.shape[0])


@dataclass(frozen=True, eq=False)
class AttributeTable:
    """Attributes of the rows named by `ids` (external ids, unique)."""

    ids: np.ndarray
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def schema(self) -> dict[str, str]:
        return {name: column.kind for name, column in self.columns.items()}

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes) + sum(c.nbytes for c in self.columns.values())

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in this table, -1 for ids it does not hold."""
        if self.ids.shape[0] == 0 or ids.shape[0] == 0:
            return np.full(ids.shape[0], -1, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        at = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.shape[0] - 1)
        return np.where(sorted_ids[at] == ids, order[at], -1).astype(np.int64)

    def upsert(self, update: AttributeTable) -> AttributeTable:
        """This table with `update`'s rows written over it: an updated column replaces those rows' values
        (a missing value clears one), columns the update lacks keep theirs, new ids are appended.

        A column keeps its kind; the caller converts the update's columns first (ValueError otherwise).
        """
        at = self.positions(update.ids)
        new_ids = update.ids[at < 0]
        n = self.ids.shape[0] + new_ids.shape[0]
        at = at.copy()
        at[at < 0] = np.arange(self.ids.shape[0], n)
        columns: dict[str, Column] = {}
        for name, column in self.columns.items():
            if name in update.columns:
                columns[name] = _overwrite(column, n, update.columns[name], at)
            else:
                pad = np.concatenate([np.arange(old_rows(column)), np.full(n - old_rows(column), -1)])
                columns[name] = column if column.kind == TAGS else _take(column, pad.astype(np.int64))
        for name, column in update.columns.items():
            if name not in columns:
                columns[name] = _overwrite(empty(column.kind, 0), n, column, at)
        return AttributeTable(np.concatenate([self.ids, new_ids]), columns)

    def aligned(self, item_ids: np.ndarray, item_index: Mapping[str, int] | None = None) -> AlignedColumns:
        """The columns over a catalogue given by its item ids (an item absent here has no values);
        `item_index` (id -> position) lets filters name items by `id`."""
        positions = self.positions(item_ids)
        columns = {name: _take(column, positions) for name, column in self.columns.items()}
        return AlignedColumns(item_ids.shape[0], columns, item_index)

    def row(self, item_id: str) -> dict[str, Any] | None:
        """One row's attributes as JSON values (absent ones left out); None when the id has no row."""
        [r] = self.positions(np.array([item_id])).tolist()
        if r < 0:
            return None
        out: dict[str, Any] = {}
        for name, c in self.columns.items():
            if c.kind == CATEGORICAL and c.codes is not None and c.vocab is not None and c.codes[r] >= 0:
                out[name] = str(c.vocab[c.codes[r]])
            elif c.kind == TAGS and c.rows is not None and c.codes is not None and c.vocab is not None:
                lo, hi = np.searchsorted(c.rows, [r, r + 1])
                if hi > lo:
                    out[name] = [str(t) for t in c.vocab[c.codes[lo:hi]]]
            elif c.kind == NUMERIC and c.values is not None and not np.isnan(c.values[r]):
                out[name] = float(c.values[r])
            elif c.kind == BOOLEAN and c.values is not None and c.values[r] >= 0:
                out[name] = bool(c.values[r])
        return out


class AlignedColumns(Columns):
    """Columns over a model's catalogue (row i = the model's item i), as filter_expr.evaluate reads them."""

    def __init__(self, n: int, columns: Mapping[str, Column], item_index: Mapping[str, int] | None = None) -> None:
        self.n = n
        self.columns = dict(columns)
        # The pseudo-attribute `id` (unless a column has that name): the catalogue's own item ids.
        self.item_index = item_index

    def _is_id(self, name: str) -> bool:
        return name == ID and name not in self.columns and self.item_index is not None

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.columns.values())

    def kind(self, name: str) -> str:
        return CATEGORICAL if self._is_id(name) else self.columns[name].kind

    def codes_of(self, name: str, values: tuple[Value, ...]) -> np.ndarray:
        vocab = self.columns[name].vocab
        assert vocab is not None
        wanted = np.array([v for v in values if isinstance(v, str)], dtype=str)
        at = np.minimum(np.searchsorted(vocab, wanted), max(0, vocab.shape[0] - 1))
        hit = vocab.shape[0] > 0 and wanted.shape[0] > 0
        return np.unique(at[vocab[at] == wanted]) if hit else np.zeros(0, dtype=np.int64)

    def equals(self, name: str, values: tuple[Value, ...]) -> np.ndarray:
        if self._is_id(name):
            assert self.item_index is not None
            out = np.zeros(self.n, dtype=bool)
            out[[self.item_index[v] for v in values if isinstance(v, str) and v in self.item_index]] = True
            return out
        column = self.columns[name]
        if column.kind == CATEGORICAL:
            assert column.codes is not None
            return np.isin(column.codes, self.codes_of(name, values))
        assert column.values is not None
        if column.kind == BOOLEAN:
            wanted = [int(v) for v in values if isinstance(v, bool)]
            return np.isin(column.values, np.array(wanted, dtype=np.int8))
        return np.isin(column.values, np.array([float(v) for v in values], dtype=np.float64))

    def present(self, name: str) -> np.ndarray:
        if self._is_id(name):
            return np.ones(self.n, dtype=bool)
        column = self.columns[name]
        if column.kind == TAGS:
            assert column.rows is not None
            out = np.zeros(self.n, dtype=bool)
            out[column.rows] = True
            return out
        if column.kind == CATEGORICAL:
            assert column.codes is not None
            present: np.ndarray = column.codes >= 0
            return present
        assert column.values is not None
        if column.kind == NUMERIC:
            not_nan: np.ndarray = ~np.isnan(column.values)
            return not_nan
        has_value: np.ndarray = column.values >= 0
        return has_value

    def numeric(self, name: str) -> np.ndarray:
        values = self.columns[name].values
        assert values is not None
        return values

    def has(self, name: str, values: tuple[Value, ...], mode: str) -> np.ndarray:
        column = self.columns[name]
        assert column.rows is not None and column.codes is not None
        wanted = self.codes_of(name, values)
        hits = np.isin(column.codes, wanted)
        counts = np.bincount(column.rows[hits], minlength=self.n)
        if mode == "all":
            distinct = len({v for v in values if isinstance(v, str)})
            # A value no item has makes `has all` keep nothing.
            all_hit: np.ndarray = counts >= distinct if wanted.shape[0] == distinct else np.zeros(self.n, bool)
            return all_hit
        any_hit: np.ndarray = counts > 0
        return any_hit


def save_table(directory: Path, table: AttributeTable) -> None:
    """attributes.npz and attributes.json (the caller publishes the directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"ids": table.ids}
    for j, column in enumerate(table.columns.values()):
        for part in ("codes", "vocab", "rows", "values"):
            array = getattr(column, part)
            if array is not None:
                arrays[f"c{j}_{part}"] = array
    np.savez(directory / ARRAYS, allow_pickle=False, **arrays)
    schema = [{"name": name, "kind": kind} for name, kind in table.schema.items()]
    meta = {"format_version": FORMAT_VERSION, "n_rows": int(table.ids.shape[0]), "columns": schema}
    (directory / META).write_text(json.dumps(meta, indent=1))


def load_table(directory: Path) -> AttributeTable:
    """Read a table written by save_table."""
    meta = json.loads((directory / META).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"attributes format version {meta.get('format_version')} is not supported")
    with np.load(directory / ARRAYS, allow_pickle=False) as z:
        columns = {}
        for j, spec in enumerate(meta["columns"]):
            parts = {p: z[f"c{j}_{p}"] for p in ("codes", "vocab", "rows", "values") if f"c{j}_{p}" in z.files}
            columns[spec["name"]] = Column(spec["kind"], **parts)
        return AttributeTable(z["ids"], columns)
