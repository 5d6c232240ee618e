"""uvicorn's httptools protocol with the limits it lacks: a cap on a request's head, and timeouts
for a client that sends its head or its body too slowly.

uvicorn bounds only an idle keep-alive connection (timeout_keep_alive); httptools has no limit on
headers, so a 16 MB Authorization header was read in full, and a client trickling its headers or
body held a connection (and its memory) for as long as it liked. Here:

- the head (request line and headers) may be at most UNFOLD_MAX_HEADER_KB, else 431 and close;
- it must arrive within UNFOLD_HEADER_TIMEOUT_SECONDS of its first byte, else 408 and close;
- a body may pause at most UNFOLD_BODY_TIMEOUT_SECONDS between two reads, else 408 (or a plain
  close once the answer has started) — not counting time the server itself stopped reading.

`unfold api` runs uvicorn with this protocol (http=HardenedHttpTools). Behind a proxy the same
limits belong in the proxy too (docs/hardening.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings, get_settings


@dataclass(frozen=True)
class ServerLimits:
    max_head_bytes: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(settings.max_header_kb * 1024, settings.header_timeout_seconds, settings.body_timeout_seconds)


class HardenedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol that refuses oversized heads and times out slow heads and bodies."""

    # Set by tests; otherwise read from this process's settings (uvicorn builds one protocol per connection).
    limits: ServerLimits | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or ServerLimits.from_settings(get_settings())
        self._in_head = True  # between the start of a request and the end of its headers
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_too_slow)
        super().data_received(data)
        # Checked after parsing: the chunk that completes the head may carry body bytes too.
        if self._in_head and self._head_bytes > self._limits.max_head_bytes:
            self._refuse(
                431, "Request Header Fields Too Large", f"the request head is over {self._limits.max_head_bytes} bytes"
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_body_timer()
        self._in_head, self._head_bytes = True, 0  # what comes next is the next request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", f"the request head took over {self._limits.header_timeout:g} s")

    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(self._limits.body_timeout, self._body_too_slow)

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.cycle is None or not self.cycle.more_body:
            return
        if self.flow.read_paused:  # the server stopped reading, not the client: wait on
            self._arm_body_timer()
            return
        if self.cycle.response_started:
            self.transport.close()
        else:
            self._refuse(408, "Request Timeout", f"the request body paused for over {self._limits.body_timeout:g} s")

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """A problem+json answer written straight to the socket, then the connection closed."""
        body = f'{{"type":"about:blank","title":"{reason}","status":{status},"detail":"{detail}"}}'.encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app, if it runs, sees the client gone
            self.cycle.message_event.set()
        self.transport.write(head + body)
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
