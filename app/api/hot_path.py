"""The steady-state hot path: GET user recommendations answered without FastAPI's machinery.

Routing, dependency solving, query validation and pydantic serialisation cost more CPU per
request than the search itself (a faiss scan of 40k items). This ASGI middleware answers the one
request shape that dominates serving traffic — a model already loaded, a known user, a plain
query string — straight from the model cache, with orjson. Anything else (a model not loaded or
not looked up recently, an unknown user, a malformed or repeated parameter) falls through to the
FastAPI route, which does the full work and produces the documented errors; tests check that both
paths answer the same bytes.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from app.services import serving

# The FastAPI route this path stands in for (also the label its requests get in /metrics).
ROUTE = "/v1/models/{model_id}/users/{user}/recommendations"
_PATH = re.compile(r"/v1/models/([^/]+)/users/([^/]+)/recommendations")
# What FastAPI accepts as a bool query parameter; anything else falls through to its 422.
_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
_HEADERS = [(b"content-type", b"application/json")]


class _RouteLabel:
    path = ROUTE


class HotPathStats:
    """How many requests the hot path answered itself (reported in /metrics)."""

    def __init__(self) -> None:
        self.answered = 0


def _parse_query(query_string: bytes) -> tuple[int, bool] | None:
    """(k, exclude_seen) when the query string is plain and valid; None sends it to the full route."""
    k, exclude_seen = 10, True
    seen: set[str] = set()
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return None
        seen.add(key)
        if key == "k":
            if not value.isdigit() or not 1 <= int(value) <= 1000:
                return None
            k = int(value)
        elif key == "exclude_seen":
            parsed = _BOOLS.get(value.lower())
            if parsed is None:
                return None
            exclude_seen = parsed
    return k, exclude_seen


class HotRecommendations:
    """Answer cached GET recommendations directly; pass every other request on unchanged."""

    def __init__(self, app: ASGIApp, cache: serving.ModelCache, stats: HotPathStats) -> None:
        self.app = app
        self.cache = cache
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._answer(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _RouteLabel
        self.stats.answered += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> bytes | None:
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        query = _parse_query(scope["query_string"])
        if query is None:
            return None
        model = self.cache.peek(match.group(1))
        user = match.group(2)
        if model is None or user not in model.user_index:
            return None
        [scored] = serving.recommend_for_users(model, [user], *query)
        return orjson.dumps({"model_id": model.id, "items": [{"item": i, "score": s} for i, s in scored]})
