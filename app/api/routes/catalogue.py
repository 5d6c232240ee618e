"""/v1/datasets/{id}/items and /v1/datasets/{id}/users: a dataset's item and user attributes (upload,
describe, one row, delete). Both kinds share one set of routes, built by _attribute_routes.

No `from __future__ import annotations`: the routes' parameter annotations name the kind (a closure
variable), which FastAPI can only read when they are evaluated as the functions are defined.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.api import catalogue_examples
from app.api.catalogue_schemas import (
    AttributeOut,
    CatalogueOut,
    ItemAttributesOut,
    ItemsUploadOut,
    UploadSummary,
    UserAttributesOut,
    UsersUploadOut,
)
from app.api.deps import FiltersDep, LimitsDep, SessionDep, StoreDep, TenantDep
from app.api.params import DatasetId, ItemId, UserId
from app.api.problems import V1_ERRORS, problems
from app.api.storable import check_form
from app.ingestion.attributes import AttributeOptions
from app.models import Catalogue
from app.services import catalogue
from app.services.catalogue import Kind

router = APIRouter(tags=["catalogue"], responses=V1_ERRORS)


def _out(row: Catalogue) -> CatalogueOut:
    return CatalogueOut(
        dataset_id=row.dataset_id,
        kind=row.kind,
        version=row.version,
        n_rows=row.n_rows,
        n_unknown=row.n_unknown,
        attributes=[AttributeOut.model_validate(c) for c in row.attributes["columns"]],
        updated_at=row.updated_at,
    )


UPLOAD_DESCRIPTION = (
    "A table with one row per {noun}: an id column, then attribute columns (csv, tsv, ndjson or parquet). "
    "Kinds are inferred per column: true/false words are boolean, numbers numeric, other text categorical, JSON or "
    "parquet lists tags (several values); text columns named in `multi_valued` are tags split on `separator`. "
    "A column keeps its kind once uploaded. With mode upsert (default) the uploaded columns are written over "
    "those rows (an empty cell or null clears a value) and everything else stays; replace starts from nothing. "
    "Ids that are not {noun}s of the dataset are stored and reported. Each upload makes a new version; queries "
    "use it at once, without retraining. 409 when another upload to the same dataset finished first.{use}"
)
USES = {
    "items": "",
    "users": " Queries use user attributes for unknown users: `segment=ATTRIBUTE` ranks the popularity "
    "fallback among the training users who share the user's value (docs/catalogue.md).",
}
DEFAULT_IDS = {"items": "item_id, itemId, item, id or movieId", "users": "user_id, userId, user or id"}


def _attribute_routes(kind: Kind, upload_out: type[CatalogueOut], form_example: dict[str, Any]) -> APIRouter:
    """Upload, describe and delete one kind of attributes; the one-row GET is declared per kind below
    (its path parameter is named after the kind)."""
    noun = kind[:-1]
    routes = APIRouter(prefix=f"/v1/datasets/{{dataset_id}}/{kind}")

    @routes.post(
        "",
        response_model=upload_out,
        responses=problems(400, 404, 409, 413),
        summary=f"Upload {noun} attributes (upsert)",
        description=UPLOAD_DESCRIPTION.format(noun=noun, use=USES[kind]),
        openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": form_example}}}},
        name=f"upload_{kind}",
    )
    async def upload(
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
            Form(max_length=200, description=f"The id column; default {DEFAULT_IDS[kind]}, else the first."),
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
            Form(
                description="upsert (default): write over the uploaded rows and columns; replace: start from nothing."
            ),
        ] = "upsert",
    ) -> CatalogueOut:
        check_form(file=file.filename, id_column=id_column, multi_valued=multi_valued, separator=separator)
        names = frozenset(n.strip() for n in (multi_valued or "").split(",") if n.strip())
        options = AttributeOptions(
            format=format, kind=kind, id_column=id_column, multi_valued=names, separator=separator
        )
        report = await run_in_threadpool(
            catalogue.upload_attributes,
            session,
            store,
            dataset_id,
            file.file,
            filename=file.filename,
            options=options,
            mode=mode,
            tenant=tenant,
            limits=limits,
            kind=kind,
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
        return upload_out(**_out(report.catalogue).model_dump(), upload=summary)

    @routes.get(
        "",
        response_model=CatalogueOut,
        responses=problems(404),
        summary=f"A dataset's {noun} attributes",
        name=f"get_{kind}",
    )
    def describe(session: SessionDep, tenant: TenantDep, dataset_id: DatasetId) -> CatalogueOut:
        return _out(catalogue.get_catalogue(session, dataset_id, tenant=tenant, kind=kind))

    @routes.delete(
        "",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problems(404),
        summary=f"Remove a dataset's {noun} attributes",
        name=f"delete_{kind}",
    )
    def delete(
        session: SessionDep, store: StoreDep, tenant: TenantDep, filters: FiltersDep, dataset_id: DatasetId
    ) -> None:
        catalogue.delete_catalogue(session, store, dataset_id, tenant=tenant, kind=kind)
        filters.forget_dataset(dataset_id)

    return routes


router.include_router(_attribute_routes("items", ItemsUploadOut, catalogue_examples.ITEMS_FORM))
router.include_router(_attribute_routes("users", UsersUploadOut, catalogue_examples.USERS_FORM))


@router.get(
    "/v1/datasets/{dataset_id}/items/{item:path}",
    response_model=ItemAttributesOut,
    responses=problems(404),
    summary="One item's attributes",
)
def get_item(
    session: SessionDep, store: StoreDep, tenant: TenantDep, dataset_id: DatasetId, item: ItemId
) -> ItemAttributesOut:
    values = catalogue.row_attributes(session, store, dataset_id, item, tenant=tenant)
    return ItemAttributesOut(dataset_id=dataset_id, item=item, attributes=values)


@router.get(
    "/v1/datasets/{dataset_id}/users/{user:path}",
    response_model=UserAttributesOut,
    responses=problems(404),
    summary="One user's attributes",
)
def get_user(
    session: SessionDep, store: StoreDep, tenant: TenantDep, dataset_id: DatasetId, user: UserId
) -> UserAttributesOut:
    values = catalogue.row_attributes(session, store, dataset_id, user, tenant=tenant, kind="users")
    return UserAttributesOut(dataset_id=dataset_id, user=user, attributes=values)
