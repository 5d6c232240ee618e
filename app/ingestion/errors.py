"""Errors the parser raises for uploads the user can fix."""

from __future__ import annotations

import pyarrow as pa

# What Arrow raises for bad input (as opposed to I/O or memory failures).
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


class IngestError(ValueError):
    """A problem with the uploaded file that the user can fix."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.reason = message
        self.line = line
        self.column = column
        self.row = row
        super().__init__(_sentence(message, line=line, column=column, row=row))


def _sentence(message: str, *, line: int | None, column: str | None, row: int | None) -> str:
    """Prefix the reason with where it happened: 'line 17, column 'rating': ...'."""
    where = []
    if line is not None:
        where.append(f"line {line}")
    elif row is not None:
        where.append(f"row {row}")
    if column is not None:
        # Without a header the column is known by its 0-based index, as in ParseOptions.
        where.append(f"column {column} (counting from 0)" if column.isdigit() else f"column {column!r}")
    return f"{', '.join(where)}: {message}" if where else message


class RowLimitExceeded(IngestError):
    """The file holds more interactions than the caller allows (`max_rows` of parse_file)."""

    def __init__(self, rows: int, limit: int) -> None:
        super().__init__(f"the file has {rows} rows (interactions), more than the limit of {limit}")
        self.rows = rows
        self.limit = limit


class RowError(Exception):
    """Internal: a bad value at a 0-based data row, before the reader maps the row to a line.

    `earlier_row`, when given, is a row the message refers to ("...on its first row"): the reader
    appends where that is, such as " (line 3)".
    """

    def __init__(self, row: int, role: str, message: str, *, earlier_row: int | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.role = role
        self.message = message
        self.earlier_row = earlier_row
