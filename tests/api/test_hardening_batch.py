"""A batch call's cost is bounded before anything is searched; large batches stream as NDJSON.

A 69 KB request (10,000 users, k 1000) used to be a 40.6 MB answer and a 602 MB peak in the API.
users × k (UNFOLD_MAX_BATCH_RESULTS) and an upper bound of the JSON answer's bytes
(UNFOLD_MAX_BATCH_RESPONSE_MB) are checked first; NDJSON answers hold one chunk at a time.
"""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from app.services import serving

ODD_ITEMS = ["plain", "ünï/cødé", 'quote"and\\slash', "tab\there", "\x01ctl", "日本語" * 5]


def _client(tmp_path: Path, **limits) -> tuple[TestClient, str, list[str]]:
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5, **limits)
    upgrade(settings.resolved_database_url)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    users = [f"u{i}" for i in range(40)]
    items = [f"i{i}" for i in range(30)] + ODD_ITEMS
    path = tmp_path / "p.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["user", "item"])
        for n, user in enumerate(users):
            out.writerows([user, items[(n + 5 * m) % len(items)]] for m in range(6))
    with path.open("rb") as fh:
        ds = client.post("/v1/datasets", files={"file": ("p.csv", fh)}).json()
    spec = {"dataset_id": ds["id"], "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
    assert job["status"] == "succeeded", job
    return client, job["model_id"], users


def _no_search(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("searched before the limit was checked")

    monkeypatch.setattr(serving, "recommend_for_users", refuse)


def test_users_times_k_over_the_limit_is_a_422_naming_it_before_any_search(tmp_path, monkeypatch):
    client, model, users = _client(tmp_path, max_batch_results=100)
    assert (
        client.post(f"/v1/models/{model}/recommendations/batch", json={"users": users[:20], "k": 5}).status_code == 200
    )
    _no_search(monkeypatch)
    response = client.post(f"/v1/models/{model}/recommendations/batch", json={"users": users[:21], "k": 5})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert (problem["field"], problem["value"], problem["limit"], problem["setting"]) == (
        "users",
        105,
        100,
        "UNFOLD_MAX_BATCH_RESULTS",
    )
    assert "21 × 5" in problem["detail"] and problem["errors"][0]["type"] == "limit_exceeded"


def test_the_issues_request_is_over_the_default_limits():
    from app.errors import LimitExceeded
    from app.limits import Limits, check_batch_cost

    # 10,000 known users, k 1000 (a 40.6 MB answer): refused by default, on the count alone.
    with pytest.raises(LimitExceeded) as refused:
        check_batch_cost(10_000, 1000, 0, Limits())
    assert refused.value.extra["setting"] == "UNFOLD_MAX_BATCH_RESULTS"
    # The worst admissible buffered answer (docs/hardening.md measures its memory) passes.
    check_batch_cost(100, 1000, 7 * 2**20, Limits())


def test_an_answer_over_the_byte_limit_is_a_413_naming_it(tmp_path, monkeypatch):
    client, model, users = _client(tmp_path, max_batch_response_mb=4096 / 2**20)
    _no_search(monkeypatch)
    response = client.post(f"/v1/models/{model}/recommendations/batch", json={"users": users, "k": 10})
    assert response.status_code == 413, response.text
    problem = response.json()
    assert (problem["field"], problem["limit"], problem["setting"]) == ("users", 4096, "UNFOLD_MAX_BATCH_RESPONSE_MB")
    assert problem["value"] > 4096


@pytest.mark.parametrize("k", [1, 7, 36, 1000])
def test_the_byte_estimate_bounds_the_real_answer(tmp_path, k):
    client, model, users = _client(tmp_path)
    body = {"users": [*users, "nobody", "ünknown/ü"], "k": k, "exclude_seen": False}
    response = client.post(f"/v1/models/{model}/recommendations/batch", json=body)
    assert response.status_code == 200
    loaded = client.app.state.model_cache.peek("default", model)
    _, _, estimate = serving.batch_cost(loaded, body["users"], k)
    assert len(response.content) <= estimate < 2 * len(response.content) + 1000


def test_ndjson_streams_the_same_answer_and_is_exempt_from_the_buffered_limits(tmp_path):
    client, model, users = _client(tmp_path, max_batch_results=10, max_batch_response_mb=1 / 1024)
    body = {"users": [*users, "nobody", users[0]], "k": 5}
    url = f"/v1/models/{model}/recommendations/batch"
    assert client.post(url, json=body).status_code == 422
    streamed = client.post(url, json=body, headers={"Accept": "application/x-ndjson"})
    assert streamed.status_code == 200 and streamed.headers["content-type"] == "application/x-ndjson"
    head, *lines = [orjson.loads(line) for line in streamed.content.splitlines()]
    assert head == {"model_id": model, "unknown_users": ["nobody"]}
    assert [line["user"] for line in lines] == users
    # Each user's line is what the single-user route answers.
    buffered = {line["user"]: line["items"] for line in lines}
    assert all(len(items) == 5 for items in buffered.values())
    one = client.get(f"/v1/models/{model}/users/{users[3]}/recommendations?k=5").json()["items"]
    assert buffered[users[3]] == one


def test_a_stream_searches_one_chunk_at_a_time(tmp_path, monkeypatch):
    client, model, users = _client(tmp_path)
    monkeypatch.setattr(serving, "STREAM_CHUNK_RESULTS", 20)
    calls: list[int] = []
    real = serving.recommend_for_users

    def counted(model, users, *args, **kwargs):
        calls.append(len(users))
        return real(model, users, *args, **kwargs)

    monkeypatch.setattr(serving, "recommend_for_users", counted)
    response = client.post(
        f"/v1/models/{model}/recommendations/batch",
        json={"users": users, "k": 5},
        headers={"Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200 and len(response.content.splitlines()) == 41
    assert calls == [4] * 10  # 20 results per chunk at k 5: four users at a time
