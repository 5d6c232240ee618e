"""/v1/datasets: upload (streamed), list, fetch, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.api import examples
from app.api.deps import LimitsDep, SessionDep, StoreDep, TenantDep
from app.api.params import Cursor, DatasetId, Limit
from app.api.problems import V1_ERRORS, problems
from app.api.schemas import DatasetOut, Page
from app.api.storable import check_form
from app.ingestion import ParseOptions
from app.services import datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=V1_ERRORS)

Format = Literal["auto", "csv", "tsv", "parquet", "movielens", "adjacency"]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    responses=problems(400, 413),
    summary="Upload interactions",
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": examples.UPLOAD_FORM}}}},
)
async def upload_dataset(
    session: SessionDep,
    tenant: TenantDep,
    store: StoreDep,
    limits: LimitsDep,
    file: Annotated[
        UploadFile,
        File(
            description="The interactions file: one (user, item[, weight[, timestamp]]) per row, streamed; over "
            "UNFOLD_MAX_UPLOAD_MB or UNFOLD_MAX_UPLOAD_ROWS is a 413."
        ),
    ],
    name: Annotated[str | None, Form(max_length=200, description="A name to show; default the file's name.")] = None,
    format: Annotated[
        Format,
        Form(
            description="csv, tsv, parquet, movielens (`::`-separated .dat), adjacency (lines `user item item …`); "
            "auto (default) detects it from the name and the content."
        ),
    ] = "auto",
    user_column: Annotated[
        str | None,
        Form(
            description="Header name or 0-based index; default a known name (userId, user_id, user, uid), else the "
            "first free column."
        ),
    ] = None,
    item_column: Annotated[
        str | None,
        Form(
            description="Header name or 0-based index; default a known name (itemId, item_id, movieId, artistId, "
            "item, iid), else the next free column."
        ),
    ] = None,
    weight_column: Annotated[
        str | None,
        Form(
            description="Header name or 0-based index; default a known name (rating, weight, count, plays, "
            "playcount, score, qty, quantity, clicks, value), or column 2 of a file without a header; without one "
            "every interaction weighs 1. The answer's stats list the columns used (`columns`) and the ones ignored "
            "(`ignored_columns`), with `notes` when a column was left unused and no weight was found."
        ),
    ] = None,
    timestamp_column: Annotated[
        str | None,
        Form(
            description="Header name or 0-based index; default a known name (timestamp, ts, time, datetime), or "
            "column 3 of a file without a header. The leave_last_out and temporal splits need it."
        ),
    ] = None,
    user_group_column: Annotated[str | None, Form(description="Known group per user (e.g. user_group).")] = None,
    item_group_column: Annotated[
        str | None, Form(description="Known group per item (e.g. item_group); enables leakage@k.")
    ] = None,
    has_header: Annotated[
        bool | None, Form(description="Whether the first row names the columns; detected when omitted.")
    ] = None,
    min_weight: Annotated[
        float | None,
        Form(description="Drop rows whose weight is below this, e.g. 4 keeps ratings of 4 and 5 as positives."),
    ] = None,
) -> DatasetOut:
    check_form(name=name, file=file.filename)  # both may become the dataset's name, a database row
    options = ParseOptions(
        format=format,
        user_column=user_column,
        item_column=item_column,
        weight_column=weight_column,
        timestamp_column=timestamp_column,
        user_group_column=user_group_column,
        item_group_column=item_group_column,
        has_header=has_header,
        min_weight=min_weight,
    )
    # Parsing is CPU work: keep it off the event loop.
    dataset = await run_in_threadpool(
        datasets.create_dataset,
        session,
        store,
        file.file,
        filename=file.filename,
        name=name,
        options=options,
        tenant=tenant,
        limits=limits,
    )
    return DatasetOut.model_validate(dataset)


@router.get("", response_model=Page[DatasetOut], summary="List datasets, newest first")
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DatasetOut]:
    page = datasets.list_datasets(session, limit, cursor, tenant=tenant)
    return Page[DatasetOut](items=[DatasetOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/{dataset_id}", response_model=DatasetOut, responses=problems(404), summary="One dataset")
def get_dataset(session: SessionDep, tenant: TenantDep, dataset_id: DatasetId) -> DatasetOut:
    return DatasetOut.model_validate(datasets.get_dataset(session, dataset_id, tenant=tenant))


@router.delete(
    "/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 409), summary="Delete a dataset"
)
def delete_dataset(session: SessionDep, store: StoreDep, tenant: TenantDep, dataset_id: DatasetId) -> None:
    datasets.delete_dataset(session, store, dataset_id, tenant=tenant)
