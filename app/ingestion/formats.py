"""Format detection: magic bytes, file name extension and a sniff of the first lines."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.ingestion.columns import ALL_KNOWN_NAMES
from app.ingestion.errors import IngestError
from app.ingestion.options import FORMATS, ParseOptions

PARQUET_MAGIC = b"PAR1"
SAMPLE_LINES = 20
MAX_SAMPLE_LINE = 1 << 20  # a longer first line (a huge adjacency row) is sniffed from its prefix
ACCEPTED = (
    "CSV, TSV or space-separated columns (user, item[, weight[, timestamp]]), MovieLens '::' files, adjacency "
    "lists (user item item ...) or Parquet"
)
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
# Mirrors what Arrow's float parser accepts, so the error-path scan agrees with the fast path.
NUMBER_RE = re.compile(r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Layout:
    """How a file is laid out, as far as the first lines tell."""

    format: str  # "csv" | "tsv" | "movielens" | "adjacency" | "parquet"
    delimiter: str | None = None  # ",", "\t", " " or "::" for tables; None otherwise
    has_header: bool = False
    header_line: int = 0  # 1-based physical line of the header (blank lines before it count); 0: none
    fields: tuple[str, ...] = ()  # first non-empty line split into fields (the names under a header)


def is_number(text: str) -> bool:
    """True when Arrow would parse the text as a float."""
    return NUMBER_RE.fullmatch(text) is not None


def is_value(text: str) -> bool:
    """True for what a weight or timestamp field may hold: a number or an ISO 8601 date."""
    if is_number(text):
        return True
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def split_fields(line: str, delimiter: str) -> list[str]:
    """Split one line of a table the way the reader will (CSV quoting for ',', '\\t' and ' ')."""
    if delimiter == "::" or '"' not in line:
        return line.split(delimiter)  # the same as csv.reader without quotes, and much faster
    try:
        return next(csv.reader([line], delimiter=delimiter), [""])
    except csv.Error:  # a stray NUL or quote mix csv refuses: split plainly, the reader will judge
        return line.split(delimiter)


def detect_layout(path: str | os.PathLike[str], options: ParseOptions, filename: str | None) -> Layout:
    """Work out format, delimiter and header from the options, the name and the first lines."""
    if options.format not in FORMATS:
        raise IngestError(f"unknown format {options.format!r}; expected one of {', '.join(FORMATS)}")
    with open(path, "rb") as f:
        magic = f.read(len(PARQUET_MAGIC))
    if not magic:
        raise IngestError("the file is empty")
    if magic == PARQUET_MAGIC:
        if options.format not in ("auto", "parquet"):
            raise IngestError(f"the file is a Parquet file, not {options.format}")
        return Layout("parquet", has_header=True)
    if options.format == "parquet":
        raise IngestError("the file is not a Parquet file (it does not start with the PAR1 marker)")
    lines = _sample_lines(path)
    if not lines:
        raise IngestError("the file is empty")
    if options.format == "auto" and lines[0][1].lstrip().startswith(("{", "[")):
        # Split on commas, JSON lines would "parse" into ids like '{"user":"u2"'; say what is accepted instead.
        raise IngestError(
            f"this looks like JSON ({lines[0][1].strip()[:40]!r}); JSON and JSON lines are not accepted. Send "
            f"{ACCEPTED}, e.g. jq -r '[.user, .item] | @csv' turns JSON lines into CSV (a table whose first "
            f"field starts with '{{' or '[' is read with an explicit format, e.g. format=csv)",
            line=lines[0][0],
        )
    fmt, delimiter = _choose_format(options.format, lines, _extension_format(filename or str(path)))
    if fmt == "adjacency":
        # Adjacency rows hold ids only, so nothing in them reveals a header: trust the option.
        return Layout("adjacency", has_header=bool(options.has_header), header_line=lines[0][0])
    assert delimiter is not None
    first = split_fields(lines[0][1], delimiter)
    second = split_fields(lines[1][1], delimiter) if len(lines) > 1 else None
    has_header = options.has_header if options.has_header is not None else _looks_like_header(first, second)
    if len(first) < 2:
        raise IngestError(
            f"each line needs at least two fields (user and item) separated by {_describe(delimiter)}; "
            f"found one: {lines[0][1][:80]!r}",
            line=lines[0][0],
        )
    return Layout(fmt, delimiter, has_header, lines[0][0] if has_header else 0, tuple(first))


def _describe(delimiter: str) -> str:
    return {",": "commas", "\t": "tabs", " ": "spaces", "::": "'::'"}[delimiter]


def _extension_format(name: str) -> str | None:
    return EXTENSIONS.get(Path(name).suffix.lower())


def _sample_lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """The first non-empty lines as (1-based physical line number, text without the newline)."""
    lines: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        number = 0
        while len(lines) < SAMPLE_LINES:
            raw = f.readline(MAX_SAMPLE_LINE)
            if not raw:
                break
            truncated = not raw.endswith(b"\n") and len(raw) == MAX_SAMPLE_LINE
            # splitlines breaks on a lone CR too, as Arrow does.
            for body in raw.splitlines():
                number += 1
                text = body.decode("utf-8", errors="replace")
                if number == 1:
                    text = text.removeprefix("\ufeff")
                # Whitespace-only lines tell nothing about the layout; the reader judges them.
                if text.strip():
                    lines.append((number, text))
            if truncated:
                break  # line numbers past a truncated line would be wrong; this sample is enough
    return lines


def _choose_format(requested: str, lines: list[tuple[int, str]], ext: str | None) -> tuple[str, str | None]:
    first = lines[0][1]
    if requested == "csv":
        return "csv", ","
    if requested == "tsv":
        # "tsv" covers whitespace tables too: tabs if the file has them, else single spaces.
        return "tsv", "\t" if "\t" in first or len(first.split()) < 2 else " "
    if requested == "movielens":
        return "movielens", "::"
    if requested == "adjacency":
        return "adjacency", None
    if "::" in first:
        return "movielens", "::"
    if ext == "csv" and "," in first:
        return "csv", ","
    if "\t" in first:
        return "tsv", "\t"
    if "," in first:
        return "csv", ","
    return _sniff_whitespace(lines)


def _sniff_whitespace(lines: list[tuple[int, str]]) -> tuple[str, str | None]:
    """Tell a space-separated table (2-4 fields every line, numeric extras) from an adjacency list."""
    tokens = [text.split() for _, text in lines]
    counts = {len(t) for t in tokens}
    body = tokens[1:] if any(t.lower() in ALL_KNOWN_NAMES for t in tokens[0]) else tokens
    table = len(counts) == 1 and 2 <= next(iter(counts)) <= 4
    # Adjacency rows with 2-3 items have 3-4 tokens too; a table's extra fields are numbers or dates.
    if table and all(is_value(tok) for row in body for tok in row[2:]):
        return "tsv", " "
    if counts == {1}:
        raise IngestError(
            "each line needs at least a user and an item, separated by commas, tabs, spaces or '::'; "
            f"line {lines[0][0]} holds a single value",
            line=lines[0][0],
        )
    return "adjacency", None


def _looks_like_header(first: list[str], second: list[str] | None) -> bool:
    """A known column name on line 1, or text on line 1 where line 2 has numbers."""
    if any(field.strip().lower() in ALL_KNOWN_NAMES for field in first):
        return True
    if second is None or len(second) != len(first):
        return False
    for position in range(2, min(4, len(first))):
        if not is_value(first[position]) and is_value(second[position]):
            return True
    # Two columns of numeric ids under two words ("customer,product").
    return len(first) == 2 and not any(map(is_number, first)) and all(map(is_number, second))
