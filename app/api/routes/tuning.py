"""/v1/tuning: start a hyperparameter search, watch its leaderboard, list, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.deps import DispatchDep, LimitsDep, SessionDep, SettingsDep, TenantDep
from app.api.params import Cursor, Limit, StatusFilter, TuningId
from app.api.problems import V1_ERRORS, problems
from app.api.schemas import Page, TuningIn, TuningOut
from app.services import tuning

router = APIRouter(prefix="/v1/tuning", tags=["tuning"], responses=V1_ERRORS)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TuningOut,
    responses=problems(400, 404, 413, 429),
    summary="Start a tuning run",
)
def submit_tuning(
    session: SessionDep,
    dispatch: DispatchDep,
    limits: LimitsDep,
    settings: SettingsDep,
    tenant: TenantDep,
    body: TuningIn,
    response: Response,
) -> TuningOut:
    run = tuning.submit_tuning(
        session,
        body.spec,
        body.search,
        dispatch,
        limits=limits,
        tenant=tenant,
        max_concurrent_jobs=settings.max_concurrent_jobs,
    )
    response.headers["Location"] = f"/v1/tuning/{run.id}"
    return TuningOut.model_validate(run)


@router.get("", response_model=Page[TuningOut], summary="List tuning runs, newest first")
def list_tuning(
    session: SessionDep,
    tenant: TenantDep,
    status: StatusFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TuningOut]:
    page = tuning.list_tuning(session, status, limit, cursor, tenant=tenant)
    return Page[TuningOut](items=[TuningOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)


@router.get(
    "/{tuning_id}",
    response_model=TuningOut,
    responses=problems(404),
    summary="A run's progress, leaderboard, best trial and model",
)
def get_tuning(session: SessionDep, tenant: TenantDep, tuning_id: TuningId) -> TuningOut:
    return TuningOut.model_validate(tuning.get_tuning(session, tuning_id, tenant=tenant))


@router.post(
    "/{tuning_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TuningOut,
    responses=problems(404),
    summary="Cancel a run",
)
def cancel_tuning(session: SessionDep, tenant: TenantDep, tuning_id: TuningId) -> TuningOut:
    return TuningOut.model_validate(tuning.cancel_tuning(session, tuning_id, tenant=tenant))
