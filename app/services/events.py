"""A dataset's event stream: interactions posted after the upload, validated whole, stored before the answer.

A batch is checked completely before anything is written, and written in one transaction, so a bad row
leaves nothing behind. An event with an `event_id` is stored once per dataset: posting it again (a
client retrying after a timeout) counts it as a duplicate and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.errors import InvalidInput, LimitExceeded
from app.limits import SETTINGS, Limits
from app.models import Event, utcnow
from app.services.datasets import get_dataset

FLOAT32_MAX = 3.4028234663852886e38
MAX_ID_CHARS = 500
MAX_EVENT_ID_CHARS = 200
# Unix seconds outside this range are taken for a mistake (milliseconds sent as seconds, say).
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


class EventIn(BaseModel):
    """One interaction: who touched what, how much, when; `event_id` makes a retried post harmless."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="The user's id, as in the upload.")
    item: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="The item's id, as in the upload.")
    weight: float = Field(
        1.0,
        ge=0,
        le=FLOAT32_MAX,
        allow_inf_nan=False,
        description="The interaction's weight (count, rating...), added to any earlier weight of the same pair; "
        "default 1.",
    )
    timestamp: int | float | str | None = Field(
        None,
        description="When it happened: unix seconds or ISO 8601 (a time without a zone is UTC); default the "
        "moment it is stored.",
    )
    event_id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_EVENT_ID_CHARS,
        description="The client's id of the event: an event whose id this dataset already holds is not stored again.",
    )

    @field_validator("user", "item", "event_id")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and ("\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)):
            raise ValueError("holds a NUL character or an unpaired surrogate, which no stored text can contain")
        return value

    @field_validator("timestamp")
    @classmethod
    def _unix_seconds(cls, value: int | float | str | None) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"{value!r} is not unix seconds nor an ISO 8601 time") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            value = moment.timestamp()
        if not math.isfinite(value) or not 0 <= value <= MAX_TIMESTAMP:
            raise ValueError(f"{value} is not a time between 1970 and 9999 in unix seconds")
        return math.floor(value)


class EventBatch(BaseModel):
    """A batch of events, stored all or none."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, description="At most UNFOLD_MAX_EVENTS_PER_REQUEST events.")


@dataclass(frozen=True)
class Appended:
    """What a post stored: new events, ones already held (same event_id), and the last sequence number."""

    accepted: int
    duplicates: int
    last_seq: int | None


def check_count(n_events: int, limits: Limits) -> None:
    """413 for a batch of more events than the limit allows."""
    limit = limits.max_events_per_request
    if n_events > limit:
        raise LimitExceeded(
            "events",
            n_events,
            limit,
            SETTINGS["max_events_per_request"],
            status=413,
            detail=f"events: the batch has {n_events} events, over the limit of {limit} per request (set by "
            f"{SETTINGS['max_events_per_request']}); send it in several batches",
        )


def parse_json(body: bytes, limits: Limits) -> list[EventIn]:
    """The events of a JSON body `{"events": [...]}`; ValidationError naming `events.<i>.<field>`."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f'body: not valid JSON ({exc}); send {{"events": [...]}}', field="body") from None
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        check_count(len(document["events"]), limits)
    return EventBatch.model_validate(document).events


def parse_ndjson(body: bytes, limits: Limits) -> list[EventIn]:
    """The events of an NDJSON body, one object a line (blank lines skipped); InvalidInput naming the line."""
    lines = [(n, line) for n, line in enumerate(body.split(b"\n"), start=1) if line.strip()]
    if not lines:
        raise InvalidInput("body: no events (NDJSON: one JSON object a line)", field="body")
    check_count(len(lines), limits)
    events = []
    for n, line in lines:
        try:
            events.append(EventIn.model_validate(orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"line {n}: not valid JSON ({exc})", line=n, field="body") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "event"
            raise InvalidInput(f"line {n}: {field}: {first['msg']}", line=n, field=field) from None
    return events


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows whose event_id the dataset does not hold yet; the seqs of those stored.

    One statement: the unique (dataset_id, event_id) constraint skips a repeated id, whether an earlier post or
    an earlier row of this batch holds it (and a concurrent post storing the same id cannot fail this one).
    """
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):  # pragma: no cover - the two databases Unfold runs on
        raise RuntimeError(f"events are stored on PostgreSQL or SQLite, not {dialect}")
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, Event.__table__)
    # The table's Core statement with the rows as parameters: compiled once and cached, sent as multi-row
    # VALUES by SQLAlchemy's insertmanyvalues (an ORM .values(rows) was compiled anew on every post).
    statement = upsert(table).on_conflict_do_nothing(index_elements=["dataset_id", "event_id"])
    return list(session.scalars(statement.returning(table.c.seq), rows))


def _rows(dataset_id: str, tenant: str, events: Sequence[EventIn]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "tenant": tenant,
            "dataset_id": dataset_id,
            "event_id": e.event_id,
            "user": e.user,
            "item": e.item,
            "weight": e.weight,
            "timestamp": e.timestamp,
            "created_at": now,
        }
        for e in events
    ]


# Rows per INSERT statement: 8 columns each, under SQLite's 32,766 bound parameters.
INSERT_CHUNK = 4000


def append_events(
    session: Session, dataset_id: str, events: Sequence[EventIn], *, tenant: str, limits: Limits
) -> Appended:
    """Store a validated batch in one transaction (committed before this returns); 404 for another tenant's dataset."""
    get_dataset(session, dataset_id, tenant=tenant)
    check_count(len(events), limits)
    rows = _rows(dataset_id, tenant, events)
    stored = [
        seq
        for start in range(0, len(rows), INSERT_CHUNK)
        for seq in _insert_new(session, rows[start : start + INSERT_CHUNK])
    ]
    last = max(stored) if stored else session.scalar(select(func.max(Event.seq)).where(Event.dataset_id == dataset_id))
    session.commit()
    return Appended(len(stored), len(events) - len(stored), last)


def events_after(session: Session, dataset_id: str, after_seq: int, through_seq: int | None = None) -> list[Event]:
    """The dataset's events with after_seq < seq (<= through_seq when given), oldest first."""
    query = select(Event).where(Event.dataset_id == dataset_id, Event.seq > after_seq)
    if through_seq is not None:
        query = query.where(Event.seq <= through_seq)
    return list(session.scalars(query.order_by(Event.seq)))


def per_minute(session: Session, dataset_id: str, minutes: int = 60) -> list[int]:
    """Events stored in each of the last `minutes` minutes, oldest first (the dashboard's sparkline)."""
    now = utcnow()
    since = now - timedelta(minutes=minutes)
    counts = [0] * minutes
    stamps: Iterable[datetime] = session.scalars(
        select(Event.created_at).where(Event.dataset_id == dataset_id, Event.created_at >= since)
    )
    for stamp in stamps:
        if stamp.tzinfo is None:  # SQLite hands datetimes back without their zone; they are UTC
            stamp = stamp.replace(tzinfo=UTC)
        age = int((now - stamp).total_seconds() // 60)
        if 0 <= age < minutes:
            counts[minutes - 1 - age] += 1
    return counts
