"""The problem+json body of every error, and how the OpenAPI document describes it.

Routes declare the errors they can answer with `responses=problems(404, 409, ...)`; `install_openapi`
then files those bodies under `application/problem+json`, the media type they are sent with
(FastAPI would list them as application/json), so clients and schemathesis read the real contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

PROBLEM = "application/problem+json"
_REF = "#/components/schemas/Problem"

DESCRIPTIONS = {
    400: "The body could not be read (not JSON, not UTF-8, or broken multipart framing).",
    401: "No valid API key (`Authorization: Bearer <key>`), once keys are in use.",
    404: "No such resource for this tenant (another tenant's is a 404 too), or none that the body names.",
    409: "The resource is in use (a dataset with a queued or running job).",
    413: "The body or the upload is over a limit (the problem names field, limit, value and setting).",
    422: "Invalid input: the problem names the field, or the line and column of a bad upload.",
    429: "Too many jobs queued or running for this tenant (see Retry-After).",
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `wals.l2` or `k`.")
    message: str = Field(description="What is wrong with it.")
    type: str = Field(description="pydantic's error type (e.g. greater_than_equal, missing, extra_forbidden).")


class Problem(BaseModel):
    """RFC 9457 problem details; further members say more (field, line, column, limit, value, setting...)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Validation failed",
                    "status": 422,
                    "detail": "wals.l2: Input should be greater than or equal to 0",
                    "errors": [
                        {
                            "field": "wals.l2",
                            "message": "Input should be greater than or equal to 0",
                            "type": "greater_than_equal",
                        }
                    ],
                }
            ]
        },
    )
    type: str = Field("about:blank", description="Always about:blank: the status and title say what kind it is.")
    title: str = Field(description="Short and fixed per kind, e.g. Not found, Validation failed, Limit exceeded.")
    status: int = Field(description="The HTTP status code, repeated.")
    detail: str = Field(description="What is wrong, in one sentence a user can act on.")
    errors: list[FieldError] | None = Field(None, description="Every offending field (validation and limits).")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these error statuses, each a Problem."""
    return {status: {"model": Problem, "description": DESCRIPTIONS[status]} for status in statuses}


# Every /v1 route can answer these: no key, and a request that does not validate.
V1_ERRORS = problems(401, 422)


def install_openapi(app: FastAPI) -> None:
    """Serve the OpenAPI document with every Problem response under application/problem+json."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if content.get("application/json", {}).get("schema") == {"$ref": _REF}:
                            content[PROBLEM] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
