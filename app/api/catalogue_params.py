"""Query parameters of filtered, diversified and cold-start queries (docs/catalogue.md), declared once."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from app.api.schemas import DIVERSIFY_DESCRIPTION, FILTER_DESCRIPTION

FilterQuery = Annotated[str | None, Query(min_length=1, max_length=4000, description=FILTER_DESCRIPTION)]
DiversifyQuery = Annotated[str | None, Query(min_length=1, max_length=200, description=DIVERSIFY_DESCRIPTION)]
COLD_ITEMS_DESCRIPTION = (
    "Join in the items that have attributes but no interactions in the model, each placed at the mean of the "
    "vectors of the model's items sharing its categorical values and tags (docs/catalogue.md). Off by default."
)
ColdItemsQuery = Annotated[bool, Query(description=COLD_ITEMS_DESCRIPTION)]
FallbackQuery = Annotated[
    Literal["popular", "none"],
    Query(
        description="For a user the model never saw: popular (default) answers with the most interacted-with items "
        "(within the filter) and source popular; none answers 404, as before."
    ),
]
SegmentQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        description="A user attribute (categorical, tags or boolean; uploaded with POST /v1/datasets/{id}/users): "
        "an unknown user's popular items are counted among the training users who share the user's value of it "
        "(any of its tags), within the filter; global popularity when the user has no value. An unknown "
        "attribute is a 422 naming it.",
        examples=["country"],
    ),
]
