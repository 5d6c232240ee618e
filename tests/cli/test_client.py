"""The client's pure parts: SSE parsing, --set and spec building, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.client.api import ApiError, EventsUnavailable, UnfoldClient, problem_message
from app.client.specs import build_spec, parse_value, set_path
from app.client.sse import Event, parse_events


def test_sse_parsing_joins_data_lines_and_skips_comments():
    stream = [
        ": keep-alive",
        "",
        "id: 1",
        "event: progress",
        'data: {"a":',
        "data: 1}",
        "",
        "data:plain",
        "",
        "event: end",
        'data: {"cut": tru',  # no blank line: the stream ended inside this event
    ]
    assert list(parse_events(stream)) == [
        Event("progress", '{"a":\n1}', "1"),
        Event("message", "plain", "1"),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("10", 10), ("0.1", 0.1), ("true", True), ("null", None), ("[10, 20]", [10, 20]), ("uniform", "uniform")],
)
def test_set_values_are_json_when_they_parse(text: str, value: object):
    assert parse_value(text) == value


def test_set_path_creates_blocks_and_refuses_to_descend_into_values():
    spec: dict = {"sgd": {"epochs": 3}, "dim": 8}
    set_path(spec, "sgd.negatives.strategy=uniform")
    set_path(spec, "wals.l2 = 10")
    assert spec == {"sgd": {"epochs": 3, "negatives": {"strategy": "uniform"}}, "dim": 8, "wals": {"l2": 10}}
    with pytest.raises(ValueError, match="dim is 8, not a block"):
        set_path(spec, "dim.x=1")
    for bad in ("wals.l2", "=3", "wals..l2=1"):
        with pytest.raises(ValueError, match="PATH=VALUE"):
            set_path(spec, bad)


def test_build_spec_layers_file_options_and_sets(tmp_path: Path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"dataset_id": "ds_file", "algorithm": "sgd", "dim": 32}))
    assert build_spec(None, None, path, ["dim=8"]) == {"dataset_id": "ds_file", "algorithm": "sgd", "dim": 8}
    assert build_spec("ds_cli", "wals", path, [])["dataset_id"] == "ds_cli"
    with pytest.raises(ValueError, match="--dataset"):
        build_spec(None, "wals", None, [])
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        build_spec("ds", None, path, [])


def test_error_messages_are_one_line():
    def answer(status: int, **kwargs) -> str:
        return problem_message(httpx.Response(status, **kwargs))

    problem = {"type": "about:blank", "title": "Not found", "status": 404, "detail": "no job 'x'"}
    assert answer(404, json=problem) == "404 Not found: no job 'x'"
    assert answer(404, json={"detail": "Not Found"}) == "404 Not Found"
    assert answer(422, json={"detail": [{"loc": ["body"], "msg": "bad"}]}).startswith("422 Unprocessable Entity: [")
    assert answer(502, text="<html>\n<b>Bad gateway</b>\n</html>") == "502 <html>"
    assert answer(503) == "503 Service Unavailable"


def test_the_api_key_is_sent_as_a_bearer_token(monkeypatch):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    monkeypatch.setenv("UNFOLD_API_KEY", "sekrit")
    with UnfoldClient("http://unfold.test/", transport=httpx.MockTransport(handler)) as client:
        assert client.list_jobs(status="failed") == {"items": [], "next_cursor": None}
    assert seen[0].headers["authorization"] == "Bearer sekrit"
    assert str(seen[0].url) == "http://unfold.test/v1/jobs?limit=50&status=failed"
    monkeypatch.delenv("UNFOLD_API_KEY")
    with UnfoldClient("http://unfold.test", transport=httpx.MockTransport(handler)) as client:
        client.get_job("a/b")
    assert "authorization" not in seen[1].headers and seen[1].url.raw_path == b"/v1/jobs/a%2Fb"


def test_non_json_answers_and_missing_event_streams_are_reported():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"detail": "Not Found"})
        return httpx.Response(200, text="<html>a proxy page</html>")

    with UnfoldClient("http://unfold.test", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ApiError, match="not JSON"):
            client.get_job("job_1")
        with pytest.raises(EventsUnavailable, match="404"):
            list(client.job_events("job_1"))
