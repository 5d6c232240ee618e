"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api import examples
from app.services.health import check_database

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="The process is up",
    responses={200: {"content": {"application/json": {"example": examples.HEALTH}}, "description": "Always ok."}},
)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.READY]})

    status: Literal["ok", "unavailable"] = Field(description="ok (200) when every check is ok, else unavailable (503).")
    checks: dict[str, str] = Field(description='"ok" or the error, for "database" and "broker".')


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "The database or the broker does not answer (which one).",
            "content": {"application/json": {"example": examples.NOT_READY}},
        }
    },
    summary="The database and the broker answer",
)
def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    checks: dict[str, str] = {}
    try:
        check_database(settings.resolved_database_url)
        checks["database"] = "ok"
    except Exception as exc:  # a probe reports, it does not raise
        checks["database"] = f"error: {type(exc).__name__}: {exc}"
    try:
        with request.app.state.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
