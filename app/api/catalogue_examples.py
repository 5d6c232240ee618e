"""Example bodies of the catalogue routes (item and user attributes, named filters) and of the popularity fallback.

Like app.api.examples: tests/api/test_openapi_manual.py checks each validates against its schema.
"""

from __future__ import annotations

from typing import Any

from app.api.examples import DATASET_ID, MODEL_ID

ATTRIBUTES = [
    {"name": "category", "kind": "categorical"},
    {"name": "tags", "kind": "tags"},
    {"name": "price", "kind": "numeric"},
    {"name": "in_stock", "kind": "boolean"},
]
CATALOGUE: dict[str, Any] = {
    "dataset_id": DATASET_ID,
    "kind": "items",
    "version": 3,
    "n_rows": 1447,
    "n_unknown": 2,
    "attributes": ATTRIBUTES,
    "updated_at": "2024-05-03T09:30:00.120000Z",
}
ITEMS_UPLOAD: dict[str, Any] = {
    **CATALOGUE,
    "upload": {
        "rows": 120,
        "new": 2,
        "updated": 118,
        "columns": ["price", "in_stock"],
        "n_unknown": 2,
        "unknown_ids": ["99998", "99999"],
    },
}
ITEMS_FORM: dict[str, Any] = {"file": "items.csv", "format": "auto", "mode": "upsert"}
ITEM_ATTRIBUTES: dict[str, Any] = {
    "dataset_id": DATASET_ID,
    "item": "50",
    "attributes": {"category": "sci-fi", "tags": ["classic", "space"], "price": 9.99, "in_stock": True},
}
USER_CATALOGUE: dict[str, Any] = {
    "dataset_id": DATASET_ID,
    "kind": "users",
    "version": 1,
    "n_rows": 943,
    "n_unknown": 0,
    "attributes": [{"name": "country", "kind": "categorical"}, {"name": "age", "kind": "numeric"}],
    "updated_at": "2024-05-03T09:40:00.500000Z",
}
USERS_UPLOAD: dict[str, Any] = {
    **USER_CATALOGUE,
    "n_rows": 944,
    "n_unknown": 1,
    "upload": {
        "rows": 944,
        "new": 944,
        "updated": 0,
        "columns": ["country", "age"],
        "n_unknown": 1,
        "unknown_ids": ["u_not_yet"],
    },
}
USERS_FORM: dict[str, Any] = {"file": "users.csv", "format": "auto", "mode": "upsert"}
USER_ATTRIBUTES: dict[str, Any] = {
    "dataset_id": DATASET_ID,
    "user": "196",
    "attributes": {"country": "fr", "age": 34.0},
}
FILTER_IN: dict[str, Any] = {
    "expression": 'in_stock and price < 20 and not tags has "explicit"',
    "description": "What the shop can sell today",
}
FILTER: dict[str, Any] = {
    "name": "sellable",
    **FILTER_IN,
    "created_at": "2024-05-03T09:31:00.004000Z",
    "updated_at": "2024-05-03T09:31:00.004000Z",
}
FILTERS: dict[str, Any] = {"items": [FILTER]}
# An unknown user answered by the popularity fallback: scores are interaction counts.
POPULAR: dict[str, Any] = {
    "model_id": MODEL_ID,
    "items": [{"item": "50", "score": 508.0}, {"item": "100", "score": 432.0}, {"item": "181", "score": 421.0}],
    "source": "popular",
}
# The same, ranked among the training users who share the requesting user's country (segment=country).
POPULAR_SEGMENT: dict[str, Any] = {
    "model_id": MODEL_ID,
    "items": [{"item": "100", "score": 61.0}, {"item": "50", "score": 58.0}, {"item": "258", "score": 40.0}],
    "source": "popular",
    "segment": {"attribute": "country", "value": "fr", "n_users": 118},
}
