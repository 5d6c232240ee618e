"""/v1/datasets: upload (streamed), list, fetch, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import LimitsDep, SessionDep, StoreDep, TenantDep
from app.api.problems import V1_ERRORS, problems
from app.api.schemas import DatasetOut, Page
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
)
async def upload_dataset(
    session: SessionDep,
    tenant: TenantDep,
    store: StoreDep,
    limits: LimitsDep,
    file: Annotated[UploadFile, File(description="The interactions file.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    format: Annotated[Format, Form(description="File format; auto-detected by default.")] = "auto",
    user_column: Annotated[str | None, Form(description="Column name, or 0-based index.")] = None,
    item_column: Annotated[str | None, Form()] = None,
    weight_column: Annotated[str | None, Form()] = None,
    timestamp_column: Annotated[str | None, Form()] = None,
    user_group_column: Annotated[str | None, Form(description="Known group per user (e.g. user_group).")] = None,
    item_group_column: Annotated[
        str | None, Form(description="Known group per item (e.g. item_group); enables leakage@k.")
    ] = None,
    has_header: Annotated[bool | None, Form(description="Detected when omitted.")] = None,
    min_weight: Annotated[float | None, Form(description="Drop rows whose weight is below this.")] = None,
) -> DatasetOut:
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
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Page[DatasetOut]:
    page = datasets.list_datasets(session, limit, cursor, tenant=tenant)
    return Page[DatasetOut](items=[DatasetOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/{dataset_id}", response_model=DatasetOut, responses=problems(404), summary="One dataset")
def get_dataset(session: SessionDep, tenant: TenantDep, dataset_id: str) -> DatasetOut:
    return DatasetOut.model_validate(datasets.get_dataset(session, dataset_id, tenant=tenant))


@router.delete(
    "/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 409), summary="Delete a dataset"
)
def delete_dataset(session: SessionDep, store: StoreDep, tenant: TenantDep, dataset_id: str) -> None:
    datasets.delete_dataset(session, store, dataset_id, tenant=tenant)
