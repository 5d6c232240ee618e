"""The steady-state hot path: GET user recommendations answered without FastAPI's machinery.

This ASGI middleware answers the one request shape that dominates serving traffic — a model
already loaded, a known user, a plain query string — straight from the model cache, with orjson.
Anything else (a model not loaded or not looked up recently, an unknown user, a malformed or
repeated parameter) falls through to the FastAPI route, which does the full work and produces the
documented errors; tests check that both paths answer the same bytes. Authentication follows the
same rule: the hot path answers only a caller whose key (or "no key needed") the authenticator
remembers, and then only from the names that caller's tenant looked up; a missing, unknown or
expired key goes to the route, which answers 401 or looks the key up.

Two costs are cut. FastAPI's routing, dependency solving and pydantic serialisation: about 0.1 ms
a request remains here. And the search: scanning 40k item vectors for one user is bound by memory
bandwidth, so the queries that arrive in the same event-loop turn are answered together by one
search (a matrix product reads the items once for all of them): micro-batching, as inference
servers do. It adds no waiting — a batch is whatever is already there when the loop gets to it.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import Authenticator
from app.api.params import parse_bool, parse_k
from app.errors import InvalidInput
from app.services import serving
from app.services.live_vectors import LiveEvents, Stream, recommend_live

# The FastAPI route this path stands in for (also the label its requests get in /metrics).
ROUTE = "/v1/models/{model_id}/users/{user}/recommendations"
# The user part as the route's `:path` converter reads it: anything, "/" included (ids may hold one).
_PATH = re.compile(r"/v1/models/([^/]+)/users/(.*)/recommendations", re.DOTALL)
# Set in the scope when this path's cache.peek came back empty: past a name's TTL that empty answer
# made this request the one that refreshes the name, so the route must not peek again (it would be
# answered from the old entry during the grace, and the name would never be looked up again).
PEEK_MISSED = "unfold.peek_missed"
_HEADERS = [(b"content-type", b"application/json")]


class _RouteLabel:
    path = path_format = ROUTE


class HotPathStats:
    """How many requests the hot path answered itself (reported in /metrics)."""

    def __init__(self) -> None:
        self.answered = 0


def _parse_query(query_string: bytes, max_k: int) -> tuple[int, bool] | None:
    """(k, exclude_seen) when the query string is plain and valid; None sends it to the full route.

    The values are read by the route's own parsers (app.api.params), so both paths agree on what is valid.
    """
    k, exclude_seen = 10, True
    seen: set[str] = set()
    # Decoded exactly as Starlette decodes it for the route.
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return None
        seen.add(key)
        try:
            if key == "k":
                k = parse_k(value)
                # The same bounds as the route (1..UNFOLD_MAX_K); the route answers everything else.
                if not 1 <= k <= max_k:
                    return None
            elif key == "exclude_seen":
                exclude_seen = parse_bool(value)
            else:  # e.g. `exclude`: the full route handles every other parameter
                return None
        except ValueError:
            return None
    return k, exclude_seen


def _authorization(scope: Scope) -> str | None:
    """The Authorization header as Starlette reads it (the first one, latin-1)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


@dataclass
class _Query:
    model: serving.LoadedModel
    user: str
    k: int
    exclude_seen: bool
    answer: asyncio.Future[serving.Scored]


class _Coalescer:
    """Collects the single-user queries of one event-loop turn and answers each group with one search."""

    def __init__(self) -> None:
        self._pending: list[_Query] = []
        self.batches = 0

    def submit(
        self, model: serving.LoadedModel, user: str, k: int, exclude_seen: bool
    ) -> asyncio.Future[serving.Scored]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            # call_soon runs after the request tasks already scheduled in this turn have queued theirs.
            loop.call_soon(self._flush)
        query = _Query(model, user, k, exclude_seen, loop.create_future())
        self._pending.append(query)
        return query.answer

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[tuple[int, int, bool], list[_Query]] = defaultdict(list)
        for q in pending:
            groups[(id(q.model), q.k, q.exclude_seen)].append(q)
        for (_, k, exclude_seen), queries in groups.items():
            self.batches += 1
            try:
                answers = serving.recommend_for_users(queries[0].model, [q.user for q in queries], k, exclude_seen)
            except Exception as exc:  # each waiting request fails as it would alone (a 500)
                for q in queries:
                    q.answer.set_exception(exc)
                continue
            for q, scored in zip(queries, answers, strict=True):
                q.answer.set_result(scored)


class HotRecommendations:
    """Answer cached GET recommendations directly; pass every other request on unchanged."""

    def __init__(
        self,
        app: ASGIApp,
        cache: serving.ModelCache,
        stats: HotPathStats,
        max_k: int,
        auth: Authenticator,
        live: LiveEvents | None = None,
    ) -> None:
        self.app = app
        self.live = live
        self.auth = auth
        self.max_k = max_k
        self.cache = cache
        self.stats = stats
        self.coalescer = _Coalescer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = self._query(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if query is None:
            await self.app(scope, receive, send)
            return
        model, user, k, exclude_seen, stream = query
        try:
            scored = recommend_live(model, stream, user, k, exclude_seen) if stream is not None else None
        except InvalidInput:  # interactions that determine no vector: the route answers with the documented error
            await self.app(scope, receive, send)
            return
        if scored is not None:
            # The user's fold-in over their training interactions and fresh events: one d x d solve, on the loop.
            source = "fold_in"
            self.live.live_answers += 1  # type: ignore[union-attr]  # a stream comes only from self.live
        elif user in model.user_index:
            source = "model"
            scored = await self.coalescer.submit(model, user, k, exclude_seen)
        else:  # a user only known from events on items the model does not know: the route's cold start
            await self.app(scope, receive, send)
            return
        items = [{"item": i, "score": s} for i, s in scored]
        body = orjson.dumps({"model_id": model.id, "items": items, "source": source})
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

    def _query(self, scope: Scope) -> tuple[serving.LoadedModel, str, int, bool, Stream | None] | None:
        """(model, user, k, exclude_seen, the stream of the user's events when they have some) for a request this
        path answers; None sends it to the route."""
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        query = _parse_query(scope["query_string"], self.max_k)
        if query is None:
            return None
        tenant = self.auth.peek(_authorization(scope))
        if tenant is None:
            return None
        model = self.cache.peek(tenant, match.group(1))
        if model is None:
            scope[PEEK_MISSED] = True
            return None
        user = match.group(2)
        stream = None
        # Through an alias a user's new events count (app.services.live_vectors). The route answers while this
        # process's copy of the events must be read first (first use, or no traffic for a while).
        if self.live is not None and match.group(1) != model.id:
            stream = self.live.current(model)
            if stream is None:
                return None
            if user not in stream.users:
                stream = None
        if stream is None and user not in model.user_index:
            return None
        return model, user, *query, stream
