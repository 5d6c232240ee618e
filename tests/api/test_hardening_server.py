"""`unfold api`'s HTTP protocol caps a request's head and times out slow heads and bodies.

Raw sockets against uvicorn running app.api.server.HardenedHttpTools, with small limits.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from app.api.server import HardenedHttpTools, ServerLimits


class _Small(HardenedHttpTools):
    limits = ServerLimits(max_head_bytes=8 * 1024, header_timeout=0.5, body_timeout=0.5)


async def _echo(scope, receive, send) -> None:
    """A tiny ASGI app: reads the whole body, answers its length."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def port() -> Iterator[int]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_echo, http=_Small, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _answer(conn: socket.socket, timeout: float = 5) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout`)."""
    conn.settimeout(timeout)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_a_normal_request_is_answered(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
        assert _answer(conn).endswith(b"\r\n\r\n5")


def test_an_oversized_head_is_a_431_before_it_is_read_in_full(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + b"a" * 64 * 1024)
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"application/problem+json" in answer


def test_a_head_sent_too_slowly_is_a_408(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        start = time.monotonic()
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")  # ...and the rest never comes
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start < 3


def test_a_body_that_stalls_is_a_408(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        start = time.monotonic()
        conn.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly a part")
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start < 3


def test_a_slow_but_steady_body_is_not_cut(port):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\nconnection: close\r\n\r\n")
        for piece in (b"ab", b"cd", b"ef"):  # 1.2 s in all, each pause under the 0.5 s limit
            time.sleep(0.4)
            conn.sendall(piece)
        assert _answer(conn).endswith(b"\r\n\r\n6")
