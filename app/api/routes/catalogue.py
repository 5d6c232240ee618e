"""/v1/datasets/{id}/items: a dataset's item attributes (upload, describe, one item, delete)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.api import catalogue_examples
from app.api.catalogue_schemas import AttributeOut, CatalogueOut, ItemAttributesOut, ItemsUploadOut, UploadSummary
from app.api.deps import FiltersDep, LimitsDep, SessionDep, StoreDep, TenantDep
from app.api.params import DatasetId, ItemId
from app.api.problems import V1_ERRORS, problems
from app.api.storable import check_form
from app.ingestion.attributes import AttributeOptions
from app.models import Catalogue
from app.services import catalogue

router = APIRouter(prefix="/v1/datasets/{dataset_id}/items", tags=["catalogue"], responses=V1_ERRORS)


def _out(row: Catalogue) -> CatalogueOut:
    return CatalogueOut(
        dataset_id=row.dataset_id,
        version=row.version,
        n_rows=row.n_rows,
        n_unknown=row.n_unknown,
        attributes=[AttributeOut.model_validate(c) for c in row.attributes["columns"]],
        updated_at=row.updated_at,
    )


@router.post(
    "",
    response_model=ItemsUploadOut,
    responses=problems(400, 404, 409, 413),
    summary="Upload item attributes (upsert)",
    description="A table with one row per item: an id column, then attribute columns (csv, tsv, ndjson or parquet). "
    "Kinds are inferred per column: true/false words are boolean, numbers numeric, other text categorical, JSON or "
    "parquet lists tags (several values); text columns named in `multi_valued` are tags split on `separator`. "
    "A column keeps its kind once uploaded. With mode upsert (default) the uploaded columns are written over "
    "those rows (an empty cell or null clears a value) and everything else stays; replace starts from nothing. "
    "Ids that are not items of the dataset are stored and reported. Each upload makes a new version; queries "
    "use it at once, without retraining. 409 when another upload to the same dataset finished first.",
    openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": catalogue_examples.ITEMS_FORM}}}},
)
async def upload_items(
    session: SessionDep,
    tenant: TenantDep,
    store: StoreDep,
    limits: LimitsDep,
    filters: FiltersDep,
    dataset_id: DatasetId,
    file: Annotated[UploadFile, File(description="The attribute table; over UNFOLD_MAX_UPLOAD_MB is a 413.")],
    format: Annotated[
        Literal["auto", "csv", "tsv", "ndjson", "parquet"],
        Form(description="auto (default) detects it from the file name and content."),
    ] = "auto",
    id_column: Annotated[
        str | None,
        Form(
            max_length=200, description="The id column; default item_id, itemId, item, id or movieId, else the first."
        ),
    ] = None,
    multi_valued: Annotated[
        str | None,
        Form(max_length=2000, description="Comma-separated text columns holding several values (tags), e.g. tags."),
    ] = None,
    separator: Annotated[
        str, Form(min_length=1, max_length=5, description="What separates the values of a multi-valued cell.")
    ] = "|",
    mode: Annotated[
        Literal["upsert", "replace"],
        Form(description="upsert (default): write over the uploaded rows and columns; replace: start from nothing."),
    ] = "upsert",
) -> ItemsUploadOut:
    check_form(file=file.filename, id_column=id_column, multi_valued=multi_valued, separator=separator)
    names = frozenset(n.strip() for n in (multi_valued or "").split(",") if n.strip())
    options = AttributeOptions(format=format, id_column=id_column, multi_valued=names, separator=separator)
    report = await run_in_threadpool(
        catalogue.upload_items,
        session,
        store,
        dataset_id,
        file.file,
        filename=file.filename,
        options=options,
        mode=mode,
        tenant=tenant,
        limits=limits,
    )
    filters.forget_dataset(dataset_id)
    summary = UploadSummary(
        rows=report.rows,
        new=report.new,
        updated=report.updated,
        columns=report.columns,
        n_unknown=report.n_unknown,
        unknown_ids=report.unknown_ids,
    )
    return ItemsUploadOut(**_out(report.catalogue).model_dump(), upload=summary)


@router.get("", response_model=CatalogueOut, responses=problems(404), summary="A dataset's item attributes")
def get_items(session: SessionDep, tenant: TenantDep, dataset_id: DatasetId) -> CatalogueOut:
    return _out(catalogue.get_catalogue(session, dataset_id, tenant=tenant))


@router.delete(
    "", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404), summary="Remove a dataset's item attributes"
)
def delete_items(
    session: SessionDep, store: StoreDep, tenant: TenantDep, filters: FiltersDep, dataset_id: DatasetId
) -> None:
    catalogue.delete_catalogue(session, store, dataset_id, tenant=tenant)
    filters.forget_dataset(dataset_id)


@router.get("/{item:path}", response_model=ItemAttributesOut, responses=problems(404), summary="One item's attributes")
def get_item(
    session: SessionDep, store: StoreDep, tenant: TenantDep, dataset_id: DatasetId, item: ItemId
) -> ItemAttributesOut:
    values = catalogue.item_attributes(session, store, dataset_id, item, tenant=tenant)
    return ItemAttributesOut(dataset_id=dataset_id, item=item, attributes=values)
