"""The response of GET /v1/jobs/{id}/events: a tenant's stream slot held while it is open, its key re-checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.auth import Authenticator
from app.errors import Unauthorized
from app.services import job_events


class _SlotStream(StreamingResponse):
    """A StreamingResponse that gives its slot back however it ends: finished, revoked, client gone, error."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def follow_job(
    request: Request, tenant: str, snapshot: job_events.Snapshot, first: dict[str, Any]
) -> StreamingResponse:
    """The job's event stream for `tenant`; 429 when the tenant has UNFOLD_MAX_STREAMS_PER_TENANT open here."""
    auth: Authenticator = request.app.state.auth
    header = request.headers.get("authorization")

    def allowed() -> bool:
        # The authenticator looks the key up again once its memory of it expires (UNFOLD_AUTH_CACHE_SECONDS),
        # so a revoked key ends the stream within that plus UNFOLD_STREAM_RECHECK_SECONDS.
        try:
            return auth.authenticate(header) == tenant
        except Unauthorized:
            return False

    slots: job_events.StreamSlots = request.app.state.stream_slots
    slots.acquire(tenant)
    events = job_events.job_events(
        snapshot, first, allowed=allowed, recheck_seconds=request.app.state.settings.stream_recheck_seconds
    )
    return _SlotStream(
        events,
        release=lambda: slots.release(tenant),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
