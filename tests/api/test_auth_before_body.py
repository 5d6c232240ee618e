"""A request with a body and no valid key is refused before a byte of its body is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from tests.api.test_tenants import bearer, make_settings, new_key
from tests.helpers import planted_csv, upload

BOUNDARY = "unfoldboundary"


async def _call(app: Any, headers: dict[str, str], chunks: int) -> tuple[int, bytes, int]:
    """POST /v1/datasets as raw ASGI; returns (status, body, how many body chunks the app pulled)."""
    pulled = 0
    chunk = b"u,i\n" * 16_384

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/datasets",
        "raw_path": b"/v1/datasets",
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer unf_not_a_key"}, {"Authorization": "Basic x"}])
def test_an_upload_without_a_valid_key_is_refused_unread(tmp_path: Path, headers: dict[str, str]) -> None:
    settings = make_settings(tmp_path)
    new_key(settings, "acme")
    app = create_app(settings)
    status, body, pulled = anyio.run(_call, app, headers, 64)
    assert status == 401, body
    assert pulled == 0
    # The same problem the route's own key check gives.
    with TestClient(app, raise_server_exceptions=False) as client:
        routed = client.get("/v1/datasets", headers=headers)
    assert routed.status_code == 401 and routed.content == body


def test_a_valid_key_and_an_open_api_still_upload(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as open_client:
        assert upload(open_client, planted_csv(tmp_path / "open.csv", 60, 40)).status_code == 201
    _, key = new_key(settings, "acme")
    with TestClient(create_app(settings), headers=bearer(key), raise_server_exceptions=False) as client:
        r = upload(client, planted_csv(tmp_path / "keyed.csv", 60, 40))
        assert r.status_code == 201, r.text
        assert client.post("/v1/jobs", json={"dataset_id": r.json()["id"], "dim": 4}).status_code == 202
    with TestClient(create_app(settings), raise_server_exceptions=False) as anonymous:
        refused = anonymous.post("/v1/jobs", json={"dataset_id": r.json()["id"]})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
