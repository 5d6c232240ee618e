"""Request body limits enforced while the body streams in, before anything is parsed."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.limits import MIB, SETTINGS, Limits

MULTIPART_SLACK = 64 * 1024


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 for bodies over the limit: at once from Content-Length, or as soon as the count passes it."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    def _limit(self, scope: Scope) -> tuple[int, str, str]:
        """(bytes allowed, the field it limits, the setting that sets it) for this request."""
        if scope["path"].rstrip("/") == "/v1/datasets":
            # Multipart framing adds a little around the file itself; the file's own bytes are
            # checked exactly while they are copied (app.services.datasets).
            return self.limits.max_upload_bytes + MULTIPART_SLACK, "file", SETTINGS["max_upload_bytes"]
        return self.limits.max_body_bytes, "body", SETTINGS["max_body_bytes"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, field, setting = self._limit(scope)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _reject(send, limit, field, setting, int(length), declared=True)
            return
        received = 0
        started = False
        exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The app caught BodyTooLarge (FastAPI turns any error while reading a JSON body into
                # its own 400): whatever it answers, the answer is the 413.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _reject(send, limit, field, setting, received, declared=False)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reject(send, limit, field, setting, received, declared=False)


async def _reject(send: Send, limit: int, field: str, setting: str, value: int, *, declared: bool) -> None:
    """The 413 problem: which field, the limit, the size (declared, or read before refusing) and the setting."""
    over = f"is {value} bytes, over" if declared else f"passed ({value} bytes read before it was refused)"
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content too large",
            "status": 413,
            "detail": f"{field}: the request body {over} the limit of {limit} bytes "
            f"({limit / MIB:g} MiB, set by {setting})",
            "field": field,
            "limit": limit,
            "value": value,
            "setting": setting,
            "limit_bytes": limit,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
