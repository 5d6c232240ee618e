"""Live user vectors: through an alias, a user's events since the model was trained change their recommendations."""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.errors import InvalidInput
from app.migrate import upgrade
from app.services.live_vectors import LiveEvents
from tests.helpers import planted_csv, upload

SPEC = {"dim": 8, "wals": {"iterations": 6}, "evaluation": {"split": "none"}, "search": {"mode": "off"}}
# The answer must change within 1 s (issue 19); in one process it is REFRESH_SECONDS + GRACE_SECONDS at most.
WITHIN = 1.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str, str, Path]]:
    """(client, dataset id, model id served as "prod", the uploaded file)."""
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        path = planted_csv(tmp_path / "p.csv", 40, 30)
        ds = upload(client, path).json()["id"]
        job = client.post("/v1/jobs", json={"dataset_id": ds, **SPEC}).json()
        model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
        assert client.put("/v1/aliases/prod", json={"model_id": model}).status_code == 200
        yield client, ds, model, path


def _items(client: TestClient, name: str, user: str, k: int = 10) -> list[str]:
    response = client.get(f"/v1/models/{name}/users/{user}/recommendations?k={k}")
    assert response.status_code == 200, response.text
    return [e["item"] for e in response.json()["items"]]


def _until_changed(client: TestClient, user: str, before: list[str], posted: float) -> tuple[list[str], float]:
    while (now := _items(client, "prod", user)) == before:
        assert time.monotonic() - posted < WITHIN, f"still {now} after {WITHIN}s"
        time.sleep(0.02)
    return now, time.monotonic() - posted


def _training(path: Path) -> dict[str, dict[str, float]]:
    seen: dict[str, dict[str, float]] = defaultdict(dict)
    with path.open() as fh:
        for row in csv.DictReader(fh):
            seen[row["user"]][row["item"]] = seen[row["user"]].get(row["item"], 0.0) + float(row["weight"])
    return seen


def test_a_users_events_change_their_answer_through_the_alias_only(served):
    client, ds, model, path = served
    before = _items(client, "prod", "u1")
    assert _items(client, model, "u1") == before
    # Five items of the other community, which the trained vector ranks low: the answer must move towards them.
    events = [{"user": "u1", "item": f"i{i}", "weight": 3} for i in range(20, 25)]
    assert client.post(f"/v1/datasets/{ds}/events", json={"events": events}).status_code == 200
    posted = time.monotonic()
    after, took = _until_changed(client, "u1", before, posted)
    assert took < WITHIN
    assert not {e["item"] for e in events} & set(after)  # the newly seen items are not recommended back
    assert set(after) != set(before)
    # Named by its id, the model is served as trained.
    assert _items(client, model, "u1") == before

    # The live answer is the fold-in of every interaction of the user, training ones and events together.
    items = _training(path)["u1"]
    for e in events:
        items[e["item"]] = items.get(e["item"], 0.0) + e["weight"]
    fold_in = client.post(
        f"/v1/models/{model}/recommendations", json={"items": list(items), "weights": list(items.values()), "k": 10}
    ).json()
    assert [e["item"] for e in fold_in["items"]] == after


def _unseen(response: Any) -> bool:
    """How the API answers a user the model never saw, without events: popular items (the default fallback)."""
    return bool(response.status_code == 200 and response.json()["source"] == "popular")


def _folded_in(response: Any) -> bool:
    return bool(response.status_code == 200 and response.json()["source"] == "fold_in")


def test_a_user_the_model_never_saw_is_answered_from_their_events(served):
    client, ds, model, _ = served
    assert _unseen(client.get("/v1/models/prod/users/newcomer/recommendations"))
    events = [{"user": "newcomer", "item": "i2"}, {"user": "newcomer", "item": "i5"}]
    client.post(f"/v1/datasets/{ds}/events", json={"events": events})
    posted = time.monotonic()
    while not _folded_in(response := client.get("/v1/models/prod/users/newcomer/recommendations?k=5")):
        assert time.monotonic() - posted < WITHIN
        time.sleep(0.02)
    items = [e["item"] for e in response.json()["items"]]
    assert len(items) == 5 and not {"i2", "i5"} & set(items)
    # Both items are of the first community (i0..i14): so are the recommendations.
    assert all(int(i[1:]) < 15 for i in items), items
    assert _unseen(client.get(f"/v1/models/{model}/users/newcomer/recommendations"))
    # Events only on items the model does not know give nothing to fold in: answered as without events.
    client.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "stranger", "item": "not-an-item"}]})
    time.sleep(LiveEvents.REFRESH_SECONDS + LiveEvents.GRACE_SECONDS)
    assert _unseen(client.get("/v1/models/prod/users/stranger/recommendations"))


def test_users_without_events_stay_on_the_hot_path(served):
    client, ds, _, _ = served
    client.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "u2", "item": "i25"}]})
    app: Any = client.app
    _items(client, "prod", "u3")  # the first query through the alias reads the events
    answered = app.state.hot_path.answered
    for _ in range(5):
        _items(client, "prod", "u3")
    # Fresh state and no event of u3: every one of them answered by the hot path (within one refresh period).
    assert app.state.hot_path.answered - answered >= 4
    live_events: LiveEvents = app.state.live_events
    hot_before, live_before = app.state.hot_path.answered, live_events.live_answers
    fast = client.get("/v1/models/prod/users/u2/recommendations")
    # A user with events is answered there too, from the live vector, with the same bytes as the full route
    # (an `exclude` of no item sends the request there).
    assert app.state.hot_path.answered == hot_before + 1 and live_events.live_answers == live_before + 1
    slow = client.get("/v1/models/prod/users/u2/recommendations?exclude=no-such-item")
    assert app.state.hot_path.answered == hot_before + 1 and live_events.live_answers == live_before + 2
    assert fast.json()["source"] == "fold_in" and fast.content == slow.content


def test_a_due_state_answers_while_it_is_read_in_the_background(served, monkeypatch):
    client, ds, _, _ = served
    app: Any = client.app
    live_events: LiveEvents = app.state.live_events
    _items(client, "prod", "u3")  # registers the stream
    [model_id] = live_events.watched()
    model = app.state.model_cache.peek("default", "prod")
    clock = [time.monotonic()]
    monkeypatch.setattr(live_events, "clock", lambda: clock[0])
    stream = live_events.current(model)
    assert stream is not None and stream.model_id == model_id
    client.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "u4", "item": "i26"}]})
    # Due, within the grace: the old state answers at once (u4 has no events there) and a read starts.
    clock[0] = stream.fresh_until + LiveEvents.GRACE_SECONDS / 2
    reads = live_events.refreshes
    assert live_events.current(model) is stream and "u4" not in stream.users
    deadline = time.perf_counter() + 10
    while live_events.refreshes == reads:
        assert time.perf_counter() < deadline, "the background read never ran"
        time.sleep(0.01)
    assert stream.users["u4"].count == 1 and not stream.refreshing
    # Past the grace without a read, the state must be read before it answers.
    clock[0] = stream.fresh_until + LiveEvents.GRACE_SECONDS + 0.01
    assert live_events.current(model) is None


def test_a_live_vector_the_hot_path_cannot_solve_goes_to_the_route(served, monkeypatch):
    client, ds, _, _ = served
    client.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "u5", "item": "i27"}]})
    expected = client.get("/v1/models/prod/users/u5/recommendations?exclude=no-such-item")  # the route's answer
    assert expected.json()["source"] == "fold_in"

    def unsolvable(*_: Any, **__: Any) -> None:
        raise InvalidInput("the interactions of user 'u5' do not determine a vector")

    # The hot path's solve fails: the request is handed to the route (whose own solve answers), never a 500.
    monkeypatch.setattr("app.api.hot_path.recommend_live", unsolvable)
    response = client.get("/v1/models/prod/users/u5/recommendations")
    assert response.status_code == 200 and response.content == expected.content
