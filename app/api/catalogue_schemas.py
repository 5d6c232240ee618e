"""Bodies of the catalogue routes: item and user attributes of a dataset, and named filters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import catalogue_examples
from app.api.schemas import UtcDatetime


class AttributeOut(BaseModel):
    name: str = Field(description="The column's name: what a filter calls it.")
    kind: Literal["categorical", "tags", "numeric", "boolean"] = Field(
        description="categorical (one string), tags (several strings: test with `has`), numeric, boolean."
    )


class CatalogueOut(BaseModel):
    """A dataset's item (or user) attributes: the current version and its schema."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [catalogue_examples.CATALOGUE, catalogue_examples.USER_CATALOGUE]}
    )

    dataset_id: str = Field(
        description="The dataset the attributes belong to (its models' filters read the item attributes, "
        "segment popularity the user attributes)."
    )
    kind: Literal["items", "users"] = Field(description="Whose attributes: the dataset's items or its users.")
    version: int = Field(description="Goes up by one with each upload; queries use the newest without retraining.")
    n_rows: int = Field(description="Items (users) with attributes, including ids that are not in the dataset.")
    n_unknown: int = Field(
        description="Rows whose id is not an item (user) of the dataset: kept, a later version may hold them."
    )
    attributes: list[AttributeOut] = Field(description="Every attribute, in the order they were first uploaded.")
    updated_at: UtcDatetime = Field(description="When the current version was written (ISO 8601 UTC).")


class UploadSummary(BaseModel):
    rows: int = Field(description="Rows in the uploaded file.")
    new: int = Field(description="Rows for ids that had no attributes before.")
    updated: int = Field(description="Rows that wrote over an id's attributes (only the columns uploaded).")
    columns: list[str] = Field(description="The attribute columns the file held (the id column left out).")
    n_unknown: int = Field(description="Uploaded ids that are not items (users) of the dataset (stored and reported).")
    unknown_ids: list[str] = Field(description="The first 20 of them.")


class ItemsUploadOut(CatalogueOut):
    model_config = ConfigDict(json_schema_extra={"examples": [catalogue_examples.ITEMS_UPLOAD]})

    upload: UploadSummary = Field(description="What this upload changed.")


class UsersUploadOut(CatalogueOut):
    model_config = ConfigDict(json_schema_extra={"examples": [catalogue_examples.USERS_UPLOAD]})

    upload: UploadSummary = Field(description="What this upload changed.")


class UserAttributesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [catalogue_examples.USER_ATTRIBUTES]})

    dataset_id: str = Field(description="The dataset.")
    user: str = Field(description="The user id.")
    attributes: dict[str, Any] = Field(description="Its values by attribute; attributes without a value left out.")


class ItemAttributesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [catalogue_examples.ITEM_ATTRIBUTES]})

    dataset_id: str = Field(description="The dataset.")
    item: str = Field(description="The item id.")
    attributes: dict[str, Any] = Field(description="Its values by attribute; attributes without a value left out.")


class FilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [catalogue_examples.FILTER_IN]})

    expression: str = Field(
        min_length=1,
        max_length=4000,
        description="A filter expression (docs/catalogue.md); may name other filters as @name. Its syntax and "
        "names are checked now, its attributes when a query on a model uses it.",
    )
    description: str | None = Field(None, max_length=500, description="What it is for (shown in the dashboard).")


class FilterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [catalogue_examples.FILTER]})

    name: str = Field(description="Use it in a query as `filter=@name`, alone or inside an expression.")
    expression: str = Field(description="The stored expression.")
    description: str | None = Field(description="What it is for.")
    created_at: UtcDatetime = Field(description="When the name was first stored (ISO 8601 UTC).")
    updated_at: UtcDatetime = Field(description="When the expression was last replaced (ISO 8601 UTC).")


class FilterList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [catalogue_examples.FILTERS]})

    items: list[FilterOut] = Field(description="Every named filter of the caller's tenant, by name.")
