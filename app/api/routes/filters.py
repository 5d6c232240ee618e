"""/v1/filters: filter expressions stored by name, used in queries as `@name`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.api.catalogue_schemas import FilterIn, FilterList, FilterOut
from app.api.deps import FiltersDep, SessionDep, TenantDep
from app.api.problems import V1_ERRORS, problems
from app.services import filters

router = APIRouter(prefix="/v1/filters", tags=["filters"], responses=V1_ERRORS)

FilterName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Filter name: letters, digits, `.`, `_` and `-`, starting with a letter or digit (1..100 chars); "
        "a query names it as `@name`.",
    ),
]


@router.get("", response_model=FilterList, summary="List named filters")
def list_filters(session: SessionDep, tenant: TenantDep) -> FilterList:
    return FilterList(items=[FilterOut.model_validate(f) for f in filters.list_filters(session, tenant=tenant)])


@router.put(
    "/{name}",
    response_model=FilterOut,
    responses=problems(400, 413),
    summary="Store a filter under a name",
    description="Creates or replaces it. The expression's syntax and the @names it uses are checked now (a 422 "
    "names the position); its attributes are checked by each query, against the model's dataset.",
)
def put_filter(
    session: SessionDep, tenant: TenantDep, cache: FiltersDep, name: FilterName, body: FilterIn
) -> FilterOut:
    row = filters.put_filter(session, name, body.expression, body.description, tenant=tenant)
    cache.forget_named(tenant, name)
    return FilterOut.model_validate(row)


@router.get("/{name}", response_model=FilterOut, responses=problems(404), summary="One named filter")
def get_filter(session: SessionDep, tenant: TenantDep, name: FilterName) -> FilterOut:
    return FilterOut.model_validate(filters.get_filter(session, name, tenant=tenant))


@router.delete(
    "/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404), summary="Delete a named filter"
)
def delete_filter(session: SessionDep, tenant: TenantDep, cache: FiltersDep, name: FilterName) -> None:
    filters.delete_filter(session, name, tenant=tenant)
    cache.forget_named(tenant, name)
