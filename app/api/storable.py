"""Text that PostgreSQL cannot store is refused at the edge, so both databases answer alike.

PostgreSQL's text type holds no NUL character and its UTF-8 encoding no unpaired surrogate;
SQLite stores both. A path, query parameter or JSON string holding one reached the database as
a lookup and was a 404 on SQLite but a 500 on PostgreSQL. Nothing stored can contain them, so:
in a path it is a 404 (no resource is named so), in a query parameter or a JSON body a 422 naming
the field, in the shape of request-validation errors. The server decodes paths and query strings
with errors="replace", so there only a NUL can appear; a JSON string may hold either as an escape.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import problem
from app.errors import InvalidInput

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_WHY = "holds a NUL character or an unpaired surrogate, which no stored text can contain"


def unstorable(text: str) -> bool:
    """Whether PostgreSQL would refuse to store this text."""
    return _UNSTORABLE.search(text) is not None


def check_form(**fields: str | None) -> None:
    """InvalidInput naming the first form field (or upload file name) that cannot be stored.

    Multipart bodies are parsed by the route, not here: an uploaded file may hold any byte.
    """
    for field, value in fields.items():
        if value is not None and unstorable(value):
            raise InvalidInput(f"{field} {_WHY}", field=field)


def _invalid(field: str) -> Any:
    message = f"{field} {_WHY}"
    return problem(422, "Validation failed", message, errors=[{"field": field, "message": message, "type": "text"}])


def _query_field(query_string: bytes) -> str | None:
    """The first query parameter whose name or value holds a NUL (decoded as Starlette decodes it)."""
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None  # the common case costs two byte searches
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if unstorable(key) or unstorable(value):
            return key.replace("\x00", "\\0") or "query"
    return None


def _json_field(value: Any, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first string (or key) in a JSON document that cannot be stored."""
    if isinstance(value, str):
        return (".".join(path) or "body") if unstorable(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if unstorable(key):
                return ".".join((*path, key.replace("\x00", "\\0"))) or "body"
            found = _json_field(item, (*path, key))
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _json_field(item, (*path, str(i)))
            if found:
                return found
    return None


class StorableText:
    """404 for a path, 422 for a query parameter or a JSON body field, holding text no database row can."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await problem(404, "Not found", f"the path {_WHY}")(scope, receive, send)
            return
        field = _query_field(scope["query_string"])
        if field is not None:
            await _invalid(field)(scope, receive, send)
            return
        # The method first: the hot path's GETs should not pay for reading the headers.
        if scope["method"] in ("POST", "PUT", "PATCH") and b"json" in dict(scope["headers"]).get(b"content-type", b""):
            await self._json(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the JSON body (BodySizeLimit, outside, bounds it), check it, then hand it on whole."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # Raw NUL bytes and raw surrogates are not valid JSON (the route answers 422); only an escape
        # can make one, so a body without "\u" needs no parsing here.
        if b"\\u" in body:
            try:
                field = _json_field(json.loads(body))
            except ValueError:  # not JSON: the route says so, with its own 422
                field = None
            if field is not None:
                await _invalid(field)(scope, receive, send)
                return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives back what was already read, then goes on with the real one (disconnects)."""

    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed
