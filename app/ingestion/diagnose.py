"""Slow, exact scans of a text file, run only after the fast reader failed, to name the bad line."""

from __future__ import annotations

import os
from collections.abc import Iterator

from app.ingestion.columns import ColumnMap
from app.ingestion.errors import IngestError
from app.ingestion.formats import Layout, is_number, split_fields

FOLD_BYTE = b"\x1f"  # what '::' becomes before Arrow sees a MovieLens file; see readers.py


def data_lines(path: str | os.PathLike[str], layout: Layout) -> Iterator[tuple[int, bytes]]:
    """(1-based physical line number, bytes without the line ending) of each data line, as Arrow sees it."""
    number = 0
    with open(path, "rb") as f:
        for raw in f:
            # splitlines breaks on a lone CR too, as Arrow does; "\r\n" stays one line ending.
            for body in raw.splitlines():
                number += 1
                if number == 1:
                    body = body.removeprefix(b"\xef\xbb\xbf")
                if number > layout.header_line and body:  # Arrow skips lines holding nothing
                    yield number, body


def line_of_row(path: str | os.PathLike[str], layout: Layout, row: int) -> int | None:
    """The physical line number of the 0-based data row, or None past the end."""
    for index, (number, _) in enumerate(data_lines(path, layout)):
        if index == row:
            return number
    return None


def first_invalid_utf8_line(path: str | os.PathLike[str], layout: Layout) -> IngestError | None:
    """An error naming the first line that is not UTF-8, if any."""
    for number, body in data_lines(path, layout):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _utf8_error(body, exc, number, None)
    return None


def scan_table(path: str | os.PathLike[str], layout: Layout, columns: ColumnMap) -> IngestError | None:
    """Find the first line Arrow would reject: field count, UTF-8 in a used field, unparsable weight."""
    assert layout.delimiter is not None
    n_fields = len(layout.fields)
    names = f" ({', '.join(layout.fields)})" if layout.has_header else ""
    used = [col for col in columns.by_role().values() if col is not None]
    for number, body in data_lines(path, layout):
        # surrogateescape keeps undecodable bytes so the field holding them can be named below.
        text = body.decode("utf-8", errors="surrogateescape")
        if layout.format == "movielens" and FOLD_BYTE.decode() in text:
            return IngestError("the line contains the control character 0x1F", line=number)
        if layout.delimiter != "::" and '"' in text and _unclosed_quote(text, layout.delimiter):
            return IngestError('a quoted field (starting with ") is not closed on this line', line=number)
        fields = split_fields(text, layout.delimiter)
        if len(fields) != n_fields:
            return IngestError(f"expected {n_fields} fields{names} but found {len(fields)}", line=number)
        for col in used:
            try:
                fields[col.index].encode("utf-8")
            except UnicodeEncodeError:
                return IngestError("the value is not valid UTF-8 text", line=number, column=col.label)
        if columns.weight is not None:
            value = fields[columns.weight.index]
            if not is_number(value):
                reason = "the weight is empty" if not value.strip() else f"{value!r} is not a number"
                return IngestError(reason, line=number, column=columns.weight.label)
    return None


def _utf8_error(body: bytes, exc: UnicodeDecodeError, number: int, column: str | None) -> IngestError:
    return IngestError(
        f"the line is not valid UTF-8 text (byte 0x{body[exc.start]:02X} at position {exc.start + 1})",
        line=number,
        column=column,
    )


def _unclosed_quote(text: str, delimiter: str) -> bool:
    """True when a field opens a quote that the line does not close ('""' inside is an escaped quote)."""
    quoted = False
    at_start = True
    position = 0
    while position < len(text):
        char = text[position]
        if quoted:
            if char == '"':
                if text.startswith('"', position + 1):
                    position += 1  # '""' is a literal quote inside a quoted field
                else:
                    quoted = False
        elif char == delimiter:
            at_start = True
            position += 1
            continue
        elif char == '"' and at_start:
            quoted = True
        at_start = False
        position += 1
    return quoted
