"""Who is calling: the tenant of a request's `Authorization: Bearer <key>`, remembered briefly.

Every /v1 request authenticates, and a steady-state query is answered in a fraction of a
millisecond, so a database round trip per request would cost more than the query itself (and
load the database with reads that almost never change). Each API process therefore remembers,
for `ttl` seconds (UNFOLD_AUTH_CACHE_SECONDS), whether keys are required at all and which tenant
a key belongs to — or that it is not valid. The price is that a key created, revoked or the first
key configured elsewhere (the CLI writes the database directly) takes effect here within `ttl`.
"""

from __future__ import annotations

import hmac
import time

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import problem
from app.errors import Unauthorized
from app.models import DEFAULT_TENANT
from app.services import api_keys


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header; None for anything else."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def check_metrics_key(authorization: str | None, metrics_key: str | None) -> None:
    """Unauthorized unless /metrics is open (no UNFOLD_METRICS_KEY) or the request carries that key.

    A key of its own rather than a tenant's: a scraper needs no data, and the figures are not any one
    tenant's. Compared in constant time.
    """
    if metrics_key is None:
        return
    token = bearer_token(authorization)
    if token is None or not hmac.compare_digest(token.encode(), metrics_key.encode()):
        raise Unauthorized("/metrics needs the metrics key (UNFOLD_METRICS_KEY): Authorization: Bearer <key>")


class Authenticator:
    """Resolves a request's Authorization header to a tenant, with a short per-process memory."""

    # Remembered answers for unknown keys too (so a client retrying a bad key does not reach the
    # database every time); bounded, so a stream of random keys cannot grow it without end.
    MAX_REMEMBERED = 10_000

    def __init__(self, sessions: sessionmaker[Session], settings: api_keys.AuthSettings, ttl: float) -> None:
        self._sessions = sessions
        self._settings = settings
        self.ttl = ttl
        self._required: tuple[bool, float] | None = None  # (keys required, valid until)
        self._keys: dict[str, tuple[str | None, float]] = {}  # sha256 of a key -> (tenant, valid until)

    def peek(self, authorization: str | None) -> str | None:
        """The tenant when memory alone says the request may go on; None means: call authenticate()."""
        now = time.monotonic()
        required = self._required
        if required is None or required[1] < now:
            return None
        if not required[0]:
            return DEFAULT_TENANT
        token = bearer_token(authorization)
        if token is None:
            return None
        entry = self._keys.get(api_keys.hash_key(token))
        if entry is None or entry[1] < now:
            return None
        return entry[0]

    def authenticate(self, authorization: str | None) -> str:
        """The request's tenant; Unauthorized when a key is required and this one is missing or not valid.

        Blocking: it may read the database (call it from a thread on the event loop's behalf).
        """
        now = time.monotonic()
        if not self._keys_required(now):
            return DEFAULT_TENANT
        if not authorization:
            raise Unauthorized("this API needs a key: send the header Authorization: Bearer <key>")
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("the Authorization header must be: Bearer <key>")
        digest = api_keys.hash_key(token)
        entry = self._keys.get(digest)
        if entry is None or entry[1] < now:
            with self._sessions() as session:
                tenant = api_keys.resolve(session, token)
            if len(self._keys) >= self.MAX_REMEMBERED:
                self._keys.clear()
            entry = (tenant, now + self.ttl)
            self._keys[digest] = entry
        if entry[0] is None:
            raise Unauthorized("the API key is unknown or revoked")
        return entry[0]

    def _keys_required(self, now: float) -> bool:
        required = self._required
        if required is None or required[1] < now:
            with self._sessions() as session:
                required = (api_keys.auth_required(session, self._settings), now + self.ttl)
            self._required = required
        return required[0]


class AuthBeforeBody:
    """401 for a /v1 request with a body before any of the body is read.

    FastAPI resolves dependencies (the key check among them) only after it has parsed a form or JSON
    body, so without this an unauthenticated client could make the API read a whole upload (up to
    UNFOLD_MAX_UPLOAD_MB) before being refused. Requests it lets through are authenticated again by the
    route's dependency, from memory.
    """

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        if self.auth.peek(header) is None:
            try:
                await anyio.to_thread.run_sync(self.auth.authenticate, header)
            except Unauthorized as exc:
                extra = {k: v for k, v in exc.extra.items() if v is not None}
                response = problem(exc.status, exc.title, exc.detail, exc.headers, **extra)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
