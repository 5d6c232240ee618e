"""Cursor pagination over time-sortable ids: newest first, the cursor is the last id served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def paginate(
    session: Session, query: Select[Any], id_column: InstrumentedAttribute[str], limit: int, cursor: str | None
) -> Page[Any]:
    """One page of `query` ordered by id descending, starting after `cursor`."""
    if cursor:
        query = query.where(id_column < cursor)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)
