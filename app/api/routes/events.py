"""/v1/datasets/{id}/events and /versions: interactions posted after the upload, folded into new versions."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.api.deps import LimitsDep, SessionDep, StoreDep, TenantDep
from app.api.event_schemas import (
    EVENTS_JSON,
    EVENTS_NDJSON,
    EventsAccepted,
    EventStats,
    VersionList,
    VersionOut,
)
from app.api.params import DatasetId
from app.api.problems import V1_ERRORS, problems
from app.services import dataset_versions, events

router = APIRouter(prefix="/v1/datasets/{dataset_id}", tags=["events"], responses={**V1_ERRORS, **problems(404)})

NDJSON = "application/x-ndjson"


@router.post(
    "/events",
    response_model=EventsAccepted,
    responses=problems(400, 413),
    summary="Post interactions (events)",
    description='A batch of interactions that happened after the upload, as JSON `{"events": [...]}` or, with '
    "`content-type: application/x-ndjson`, one event a line. The whole batch is validated first (a bad event is a "
    "422 naming `events.<index>.<field>`, or the NDJSON line) and stored in one transaction before the answer: "
    "all or nothing. An event whose `event_id` the dataset already holds is counted as a duplicate, not stored "
    "again. Models served through an alias use a user's new events within a second (docs/events.md); "
    "POST …/versions folds them into a version to train on.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}, "example": EVENTS_JSON},
                NDJSON: {"schema": {"type": "string"}, "example": EVENTS_NDJSON},
            },
        }
    },
)
async def post_events(
    request: Request, session: SessionDep, tenant: TenantDep, limits: LimitsDep, dataset_id: DatasetId
) -> EventsAccepted:
    body = await request.body()
    ndjson = request.headers.get("content-type", "").split(";")[0].strip().lower() == NDJSON
    try:
        batch = await run_in_threadpool(events.parse_ndjson if ndjson else events.parse_json, body, limits)
    except ValidationError as exc:
        # In the shape of any request-validation error: each field as events.<index>.<field>.
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    stored = await run_in_threadpool(events.append_events, session, dataset_id, batch, tenant=tenant, limits=limits)
    return EventsAccepted(
        dataset_id=dataset_id, accepted=stored.accepted, duplicates=stored.duplicates, last_seq=stored.last_seq
    )


@router.get("/events", response_model=EventStats, summary="A dataset's event stream at a glance")
def get_event_stats(session: SessionDep, tenant: TenantDep, dataset_id: DatasetId) -> EventStats:
    stats = dataset_versions.event_stats(session, dataset_id, tenant=tenant)
    return EventStats.model_validate(stats, from_attributes=True)


@router.post(
    "/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=VersionOut,
    responses=problems(409),
    summary="Fold the events into a new version",
    description="The latest version with every event since it appended (new users and items after the known "
    "ones; repeated pairs merged, weights summed). Training jobs take the latest version unless their spec names "
    "`dataset_version`. 409 when there are no events since the latest version.",
)
def create_version(session: SessionDep, store: StoreDep, tenant: TenantDep, dataset_id: DatasetId) -> VersionOut:
    return VersionOut.model_validate(dataset_versions.create_version(session, store, dataset_id, tenant=tenant))


@router.get("/versions", response_model=VersionList, summary="A dataset's versions, newest first")
def list_versions(session: SessionDep, tenant: TenantDep, dataset_id: DatasetId) -> VersionList:
    versions = dataset_versions.list_versions(session, dataset_id, tenant=tenant)
    return VersionList(items=[VersionOut.model_validate(v) for v in versions])
