"""The OpenAPI document as a manual: its description, and every body shows an example, exactly as the models
declare it. The pages that show it (/docs, /redoc) load their assets from the fastapi-offline package, never a CDN.

FastAPI encodes the whole document with exclude_none, which also deletes every null inside an example
(fastapi/fastapi#5559): a finished job would be shown without `"error": null`, and that example no
longer matches its own schema (error is required). `install_examples` puts the models' examples back,
adds the named examples of app.api.examples as components/examples (routes point at them with
`examples.ref(name)`), and gives every body without an example its schema's first one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.api import examples as named_examples

# What /docs shows first: what the service does, in the words a first reader needs.
DESCRIPTION = """Train recommendation embeddings from interactions and query them over HTTP.

Upload who-interacted-with-what (`POST /v1/datasets`: CSV, TSV, MovieLens `::`, adjacency lists or
Parquet), start a training job (`POST /v1/jobs`: **WALS**, weighted alternating least squares, or
**SGD**-family training with sampled negatives), follow it (`GET /v1/jobs/{id}`, or its server-sent
`/events`), then ask the model: recommendations for a known user, items similar to an item,
recommendations for a user it has never seen from their items (**fold-in**), many users at once,
or nearest neighbours of a vector. Settings a training spec leaves out are measured on a validation
split of the job's own data within a budget (`search`, on by default); aliases (`PUT /v1/aliases/{name}`)
stand in for model ids; tuning runs (`POST /v1/tuning`) search settings you name.

Once an API key exists every `/v1` request needs `Authorization: Bearer <key>`. Errors are RFC 9457
`application/problem+json` naming the offending field, or the line and column of a bad upload.
The project's README walks through it with curl and with the `unfold` command line."""


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


def _media_examples(document: dict[str, Any]) -> None:
    """Give each request body and 2xx answer without an example its schema's first one (Swagger UI shows a
    media type's example; not every version shows a schema's `examples`)."""
    components = document.get("components", {}).get("schemas", {})
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            contents = [operation.get("requestBody", {}).get("content", {})]
            contents += [r.get("content", {}) for code, r in operation.get("responses", {}).items() if code[:1] == "2"]
            for content in contents:
                for media in content.values():
                    ref = media.get("schema", {}).get("$ref", "")
                    found = components.get(ref.rsplit("/", 1)[-1], {}).get("examples")
                    if found and "example" not in media and "examples" not in media:
                        media["example"] = found[0]


def install_examples(app: FastAPI) -> None:
    """Serve the document with each component schema's examples as its model declares them, and each body's
    first example on its media type."""
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
            _media_examples(document)
            # Added after FastAPI's encoding, so the named examples keep their nulls too.
            components = document.setdefault("components", {})
            components["examples"] = {**components.get("examples", {}), **named_examples.NAMED}
            restored = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
