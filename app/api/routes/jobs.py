"""/v1/jobs: submit a training job, poll it (or follow its events), list, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from app.api import examples
from app.api.deps import EnqueueDep, LimitsDep, SessionDep, SessionsDep, SettingsDep, TenantDep
from app.api.params import Cursor, JobId, Limit, StatusFilter
from app.api.problems import V1_ERRORS, Problem, problems
from app.api.schemas import JobOut, Page
from app.api.streams import follow_job as follow_stream
from app.services import job_events, jobs
from app.spec import SPEC_EXAMPLES, TrainingSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=V1_ERRORS)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={
        202: {
            "description": "Queued; `Location` is /v1/jobs/{id}. Poll it or follow its events.",
            "content": {"application/json": {"examples": {"queued": examples.ref("job_queued")}}},
        },
        **problems(400, 404, 413, 429),
    },
    summary="Start a training job",
)
def submit_job(
    session: SessionDep,
    enqueue: EnqueueDep,
    limits: LimitsDep,
    settings: SettingsDep,
    tenant: TenantDep,
    spec: Annotated[TrainingSpec, Body(openapi_examples=SPEC_EXAMPLES)],
    response: Response,
) -> JobOut:
    job = jobs.submit_job(
        session, spec, enqueue, limits, tenant=tenant, max_concurrent_jobs=settings.max_concurrent_jobs
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    session.refresh(job)
    return JobOut.model_validate(job)


@router.get("", response_model=Page[JobOut], summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    tenant: TenantDep,
    status: StatusFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[JobOut]:
    page = jobs.list_jobs(session, status, limit, cursor, tenant=tenant)
    return Page[JobOut](items=[JobOut.model_validate(j) for j in page.items], next_cursor=page.next_cursor)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={
        200: {
            "description": "The job; `progress` and `history` grow while it runs.",
            "content": {
                "application/json": {
                    "examples": {status: examples.ref(f"job_{status}") for status in ("succeeded", "running", "queued")}
                }
            },
        },
        **problems(404),
    },
    summary="A job's status, progress and history",
)
def get_job(session: SessionDep, tenant: TenantDep, job_id: JobId) -> JobOut:
    return JobOut.model_validate(jobs.get_job(session, job_id, tenant=tenant))


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={
        202: {
            "description": "The job: a queued one is cancelled at once; a running one has cancel_requested and "
            "ends cancelled after its current step. A job that has already ended is a 409 instead.",
            "content": {
                "application/json": {
                    "examples": {
                        "running": examples.ref("job_cancelling"),
                        "queued": examples.ref("job_cancelled"),
                    }
                }
            },
        },
        **problems(404),
        409: {
            "model": Problem,
            "description": "The job had already ended (succeeded, failed or cancelled): nothing was cancelled. "
            "The problem's `job_id` and `job_status` say which job and how it ended.",
        },
    },
    summary="Cancel a job",
)
def cancel_job(session: SessionDep, tenant: TenantDep, job_id: JobId) -> JobOut:
    return JobOut.model_validate(jobs.cancel_job(session, job_id, tenant=tenant))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"example": examples.JOB_EVENTS}},
            "description": "`event: progress` (data {id, status, progress}) on every change, comment lines as "
            "keep-alives, then `event: end` with the whole job; each message carries an `id:`. Once the key that "
            "opened it is revoked, `event: error` (a 401 problem) and the stream closes.",
        },
        **problems(404, 429),
    },
    summary="Follow a job: server-sent events until it ends",
)
async def follow_job(request: Request, sessions: SessionsDep, tenant: TenantDep, job_id: JobId) -> StreamingResponse:
    """`event: progress` (data {id, status, progress}) on every change, then `event: end` with the job."""
    # No SessionDep: the stream outlives the request's dependencies; each poll opens its own session.

    def snapshot() -> dict[str, Any]:
        return JobOut.model_validate(job_events.read_job(sessions, job_id, tenant=tenant)).model_dump(mode="json")

    first = await run_in_threadpool(snapshot)  # an unknown job is a 404 before the stream starts
    # 429 beyond the tenant's open streams; `event: error` and the end once its key is revoked.
    return follow_stream(request, tenant, snapshot, first)
