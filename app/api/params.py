"""Path and query parameters shared by the routes, declared once with what /docs says about them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

from app.job_status import JobStatus

DatasetId = Annotated[str, Path(description="A dataset id (`ds_…`) from POST /v1/datasets.")]
JobId = Annotated[str, Path(description="A job id (`job_…`) from POST /v1/jobs.")]
ModelId = Annotated[str, Path(description="A model id (`mdl_…`, a succeeded job's model_id) or an alias name.")]
TuningId = Annotated[str, Path(description="A tuning run id (`tun_…`) from POST /v1/tuning.")]
UserId = Annotated[str, Path(description="External user id, exactly as in the uploaded data; 404 when unknown.")]
ItemId = Annotated[str, Path(description="External item id, exactly as in the uploaded data; 404 when unknown.")]
AliasName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Alias name: letters, digits, `.`, `_` and `-`, starting with a letter or digit (1..100 chars); "
        "usable wherever a model id is taken.",
    ),
]

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1..500).")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page; omitted: start from the newest.")]
StatusFilter = Annotated[JobStatus | None, Query(description="Only those with this status; omitted: all.")]

# What a bool query parameter may say (pydantic's own words, case-insensitive, nothing around them).
BOOLS = {
    **dict.fromkeys(("true", "1", "yes", "on", "t", "y"), True),
    **dict.fromkeys(("false", "0", "no", "off", "f", "n"), False),
}


def parse_k(value: object) -> int:
    """A query's `k` from its text: ASCII digits only.

    The one parser of the route and the hot path (app.api.hot_path), so that both take or refuse the
    same strings: str.isdigit() is true of "²" and "٣", which int() refuses or reads as 3.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError("k must be a whole number written with the digits 0-9")
    return int(value)


def parse_bool(value: object) -> bool:
    """A bool query parameter from its text (one of BOOLS), shared by the route and the hot path."""
    if isinstance(value, bool):
        return value
    parsed = BOOLS.get(value.lower()) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(f"must be one of {', '.join(BOOLS)}")
    return parsed


ExcludeSeen = Annotated[
    bool,
    BeforeValidator(parse_bool),
    Query(description="Leave out items the user interacted with in the training data."),
]


def only_query(*names: str) -> Callable[[Request], None]:
    """A route dependency refusing query parameters other than `names` with a 422 naming them: a typo such as
    `kk=3` would otherwise be ignored and answer with the default k."""
    allowed = set(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            takes = ", ".join(names) if names else "no query parameters"
            raise RequestValidationError(
                [
                    {
                        "type": "extra_forbidden",
                        "loc": ("query", name),
                        "msg": f"unknown query parameter; this route takes {takes}",
                        "input": request.query_params[name],
                    }
                    for name in unknown
                ]
            )

    return check
