"""Bodies of the events and dataset-versions routes (docs/events.md), with their examples."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from app.api.examples import DATASET_ID
from app.api.schemas import UtcDatetime
from app.services.events import EventBatch

EVENTS_JSON: dict[str, Any] = {
    "events": [
        {"user": "u196", "item": "i242", "weight": 1, "timestamp": 1765094400, "event_id": "evt-0001"},
        {"user": "u196", "item": "i302", "timestamp": "2026-12-07T08:00:05Z", "event_id": "evt-0002"},
        {"user": "new-user-7", "item": "i377"},
    ]
}
EVENTS_NDJSON = (
    '{"user": "u196", "item": "i242", "weight": 1, "event_id": "evt-0001"}\n'
    '{"user": "u196", "item": "i302", "event_id": "evt-0002"}\n'
)


def install_event_schemas(app: FastAPI) -> None:
    """File EventBatch and EventIn under the document's components: the events route reads its body itself (JSON
    or NDJSON), so FastAPI does not see the model, and its requestBody refers to them by name."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if "EventBatch" not in schemas:
            batch = EventBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(batch.pop("$defs", {}))
            batch["examples"] = [EVENTS_JSON]
            schemas["EventBatch"] = batch
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class EventsAccepted(BaseModel):
    """What a post stored; every event of the batch is either accepted or a duplicate."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"dataset_id": DATASET_ID, "accepted": 3, "duplicates": 0, "last_seq": 1207}]}
    )

    dataset_id: str = Field(description="The dataset the events belong to.")
    accepted: int = Field(description="Events stored by this request (committed before the answer).")
    duplicates: int = Field(
        description="Events not stored again: their event_id was already held (an earlier post, or earlier in "
        "this batch)."
    )
    last_seq: int | None = Field(
        description="The sequence number of the last event this post stored, or the dataset's latest one when it "
        "stored none (events are folded into versions in this order)."
    )


STATS_EXAMPLE: dict[str, Any] = {
    "dataset_id": DATASET_ID,
    "total": 1207,
    "pending": 57,
    "last_seq": 1207,
    "latest_version": 3,
    "per_minute": [0] * 58 + [40, 17],
}


class EventStats(BaseModel):
    """A dataset's event stream at a glance: totals and the last hour, minute by minute."""

    model_config = ConfigDict(json_schema_extra={"examples": [STATS_EXAMPLE]})

    dataset_id: str = Field(description="The dataset.")
    total: int = Field(description="Events stored for the dataset, all versions together.")
    pending: int = Field(description="Events not yet folded into a version (POST …/versions folds them).")
    last_seq: int | None = Field(description="The latest event's sequence number; null before the first event.")
    latest_version: int = Field(description="The dataset's latest version (1: the upload).")
    per_minute: list[int] = Field(description="Events stored in each of the last 60 minutes, oldest first.")


class VersionOut(BaseModel):
    """One version of a dataset: 1 is the upload, each later one folds in the events since the one before."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": DATASET_ID,
                    "version": 2,
                    "events_through": 1150,
                    "n_events": 1150,
                    "n_users": 951,
                    "n_items": 1450,
                    "n_interactions": 56460,
                    "created_at": "2026-12-07T09:00:00Z",
                }
            ]
        },
    )

    dataset_id: str = Field(description="The dataset.")
    version: int = Field(description="1 for the upload, then 2, 3… in the order they were made.")
    events_through: int = Field(description="Events up to this sequence number are in this version (0: none).")
    n_events: int = Field(description="Events this version folded in (since the version before it).")
    n_users: int = Field(description="Distinct users; new ones are appended after those of the version before.")
    n_items: int = Field(description="Distinct items; new ones are appended after those of the version before.")
    n_interactions: int = Field(description="Distinct (user, item) pairs: repeated pairs merge, weights summed.")
    created_at: UtcDatetime = Field(description="When the version was made (ISO 8601 UTC).")


class VersionList(BaseModel):
    """Every version of a dataset, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [VersionOut.model_config["json_schema_extra"]["examples"][0]]}]  # type: ignore[index]
        }
    )

    items: list[VersionOut] = Field(description="The versions, newest first; the last one is the upload (1).")
