"""Path and query parameters shared by the routes, declared once with what /docs says about them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]

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
StatusFilter = Annotated[Status | None, Query(description="Only those with this status; omitted: all.")]
ExcludeSeen = Annotated[bool, Query(description="Leave out items the user interacted with in the training data.")]
