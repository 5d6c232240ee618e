"""The OpenAPI document as a manual: the schemas' examples exactly as the models declare them.

FastAPI encodes the whole document with exclude_none, which also deletes every null inside an example
(fastapi/fastapi#5559): a finished job would be shown without `"error": null`, and that example no
longer matches its own schema (error is required). `install_examples` puts the models' examples back.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel


def model_examples() -> dict[str, list[Any]]:
    """Examples of every app model that declares some, keyed by schema title (Page[JobOut] included)."""
    found: dict[str, list[Any]] = {}
    stack: list[type[BaseModel]] = list(BaseModel.__subclasses__())
    while stack:
        model = stack.pop()
        stack.extend(model.__subclasses__())
        generic = model.__pydantic_generic_metadata__
        if not model.__module__.startswith("app.") or generic["parameters"]:
            continue  # not ours, or a generic not yet given its type (Page itself)
        if not model.model_config.get("json_schema_extra"):
            continue
        schema = model.model_json_schema()
        if "examples" in schema:
            found[schema.get("title", model.__name__)] = schema["examples"]
    return found


def install_examples(app: FastAPI) -> None:
    """Serve the document with each component schema's examples as its model declares them."""
    build = app.openapi
    restored: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal restored
        document = build()
        if document is not restored:  # once per document built
            examples = model_examples()
            for schema in document.get("components", {}).get("schemas", {}).values():
                if "examples" in schema and schema.get("title") in examples:
                    schema["examples"] = examples[schema["title"]]
            restored = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
