"""The one place where errors become RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import DomainError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "wals", "l2") -> "wals.l2"; the transport part of the location says nothing useful.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _explain(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as {field, message, type}, in words a client can act on."""
    loc, kind = tuple(error.get("loc", ())), error.get("type", "")
    if kind == "json_invalid":
        # pydantic reports the character offset as the location ("0: JSON decode error").
        at = loc[-1] if loc and isinstance(loc[-1], int) else "?"
        reason = error.get("ctx", {}).get("error", "JSON decode error")
        message = f"not valid JSON ({reason} at character {at}); send a JSON object"
        return {"field": "body", "message": message, "type": kind}
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type", "missing"):
        message = "a JSON object is needed here, sent with content-type: application/json"
        return {"field": "body", "message": message, "type": kind}
    return {"field": _field(loc), "message": error.get("msg", ""), "type": kind}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        extra = {k: v for k, v in exc.extra.items() if v is not None}
        return problem(exc.status, exc.title, exc.detail, exc.headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_explain(e) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Validation failed", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal server error", "an unexpected error occurred; it has been logged")
