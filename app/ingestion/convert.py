"""Vectorised checks and conversions of the raw columns: ids, group labels, weights, timestamps."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.ingestion.columns import describe
from app.ingestion.errors import ARROW_ERRORS, RowError
from app.ingestion.formats import is_number

_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_INTEGER_RE = re.compile(r"\s*[+-]?\d+\s*")
_SLICE = 1 << 16  # rows per Python batch on the slow paths, to bound the Python objects alive
# Integers, then naive ISO 8601 (read as UTC), then ISO 8601 with a zone: (Arrow type, ticks a second).
_STRING_CASTS = ((pa.int64(), 1), (pa.timestamp("ns"), 10**9), (pa.timestamp("ns", tz="UTC"), 10**9))
TIMESTAMP_HINT = "expected integer seconds or an ISO 8601 date such as 2024-01-31T12:00:00Z"
# Weights are stored (and trained on) as float32: a larger one would become infinite.
MAX_WEIGHT = float(np.finfo(np.float32).max)


def check_ids(ids: pa.ChunkedArray, role: str, noun: str = "id") -> None:
    """Reject missing or empty ids and ids holding NUL, naming the first offending row.

    Group labels go through the same checks: check_ids(labels, "item_group", "label").
    """
    what = f"{describe(role)} {noun}"
    _check_nulls(ids, role, f"the {what} is missing")
    empty = pc.equal(pc.binary_length(ids), 0)
    if pc.any(empty).as_py():
        raise RowError(_first_true(empty), role, f"the {what} is empty")
    # numpy unicode arrays drop trailing NULs, which would make "a" and "a\0" the same id.
    nul = pc.match_substring(ids, "\x00")
    if pc.any(nul).as_py():
        raise RowError(_first_true(nul), role, f"the {what} contains a NUL character")


def to_weights(weights: pa.ChunkedArray | None, n_rows: int) -> np.ndarray:
    """Weights as float64, all finite and >= 0; ones when the file has no weight column."""
    if weights is None:
        return np.ones(n_rows, dtype=np.float64)
    _check_nulls(weights, "weight", "the weight is missing")
    if not pa.types.is_floating(weights.type):
        try:
            weights = weights.cast(pa.float64())
        except ARROW_ERRORS:
            for row, value in _rows(weights):
                if not (isinstance(value, str) and is_number(value)):
                    raise RowError(row, "weight", f"{value!r} is not a number") from None
            raise
    values = np.asarray(weights.to_numpy(), dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.argmin(finite))
        kind = "NaN (not a number)" if np.isnan(values[row]) else "infinite"
        raise RowError(row, "weight", f"the weight is {kind}; weights must be finite numbers")
    negative = values < 0
    if negative.any():
        row = int(np.argmax(negative))
        raise RowError(
            row, "weight", f"the weight {values[row]:g} is negative; weights are confidences and must be >= 0"
        )
    huge = values > MAX_WEIGHT
    if huge.any():
        row = int(np.argmax(huge))
        raise RowError(
            row, "weight", f"the weight {values[row]:g} is too large; weights must be at most {MAX_WEIGHT:g}"
        )
    return values


def to_timestamps(stamps: pa.ChunkedArray | None) -> np.ndarray | None:
    """Timestamps as int64 seconds since the epoch (UTC), from integers, dates or ISO 8601 strings."""
    if stamps is None:
        return None
    _check_nulls(stamps, "timestamp", "the timestamp is missing")
    kind = stamps.type
    if pa.types.is_integer(kind):
        return np.asarray(stamps.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_floating(kind):
        return _floor_seconds(np.asarray(stamps.to_numpy(), dtype=np.float64))
    if pa.types.is_timestamp(kind):
        ticks = np.asarray(stamps.cast(pa.int64()).to_numpy(), dtype=np.int64)
        return ticks // _UNITS_PER_SECOND[kind.unit]
    if pa.types.is_date32(kind):
        return np.asarray(stamps.cast(pa.int32()).to_numpy(), dtype=np.int64) * 86_400
    if pa.types.is_date64(kind):
        return np.asarray(stamps.cast(pa.int64()).to_numpy(), dtype=np.int64) // 1_000
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_time_strings(stamps)
    raise RowError(0, "timestamp", f"a column of {kind} values cannot hold timestamps ({TIMESTAMP_HINT})")


def _parse_time_strings(stamps: pa.ChunkedArray) -> np.ndarray:
    """Try Arrow's vectorised casts (integers, naive ISO, zoned ISO, floats), then Python per value."""
    try:
        return np.asarray(stamps.cast(pa.int64()).to_numpy(), dtype=np.int64)
    except ARROW_ERRORS:
        pass
    # Arrow's casts refuse surrounding spaces (" 100", "2020-01-01 "): trim once the plain cast failed.
    stamps = pc.utf8_trim_whitespace(stamps)
    for target, per_second in _STRING_CASTS:
        try:
            ticks = stamps.cast(target).cast(pa.int64())
        except ARROW_ERRORS:
            continue
        return np.asarray(ticks.to_numpy(), dtype=np.int64) // per_second
    try:
        return _floor_seconds(np.asarray(stamps.cast(pa.float64()).to_numpy(), dtype=np.float64))
    except ARROW_ERRORS:
        pass
    # Mixed forms (zoned and naive dates, years past 2262...): slow but exact, naming the bad row.
    out = np.empty(len(stamps), dtype=np.int64)
    for row, text in _rows(stamps):
        seconds = _python_seconds(str(text))
        if seconds is None:
            raise RowError(row, "timestamp", f"{text!r} is not a timestamp ({TIMESTAMP_HINT})")
        out[row] = seconds
    return out


def _python_seconds(text: str) -> int | None:
    text = text.strip()
    if _INTEGER_RE.fullmatch(text):
        return int(text)
    if is_number(text):
        value = float(text)
        return math.floor(value) if math.isfinite(value) else None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a naive time is read as UTC, as Arrow does
    return math.floor(moment.timestamp())


def _floor_seconds(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.argmin(finite))
        raise RowError(row, "timestamp", f"{values[row]} is not a timestamp ({TIMESTAMP_HINT})")
    seconds: np.ndarray = np.floor(values).astype(np.int64)
    return seconds


def _check_nulls(values: pa.ChunkedArray, role: str, message: str) -> None:
    if values.null_count:
        raise RowError(_first_true(pc.is_null(values)), role, message)


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _rows(values: pa.ChunkedArray) -> Iterator[tuple[int, object]]:
    """(row, Python value) pairs, materialised a slice at a time."""
    row = 0
    for chunk in values.chunks:
        for start in range(0, len(chunk), _SLICE):
            for value in chunk.slice(start, _SLICE).to_pylist():
                yield row, value
                row += 1
