"""The hot path for GET recommendations answers exactly what the full FastAPI route answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from tests.helpers import planted_csv, upload


@pytest.fixture
def model(client, tmp_path: Path) -> str:
    ds = upload(client, planted_csv(tmp_path / "p.csv", 60, 40)).json()["id"]
    spec = {"dataset_id": ds, "dim": 8, "wals": {"iterations": 4}, "evaluation": {"split": "none"}}
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job["model_id"]


def _get(client, url: str, **params) -> tuple[object, bool]:
    """(response, whether the hot path answered it)."""
    before = client.app.state.hot_path.answered
    response = client.get(url, params=params or None)
    return response, client.app.state.hot_path.answered == before + 1


@pytest.mark.parametrize(
    "params", [{}, {"k": "3"}, {"k": "1000"}, {"exclude_seen": "false"}, {"k": "7", "exclude_seen": "On"}]
)
def test_same_bytes_as_the_full_route(client, model, params):
    url = f"/v1/models/{model}/users/u5/recommendations"
    client.app.state.model_cache.forget_name("default", model)  # the next request takes the full route...
    slow, hot = _get(client, url, **params)
    assert slow.status_code == 200 and not hot
    fast, hot = _get(client, url, **params)  # ...which leaves the model where the hot path finds it
    assert hot
    assert fast.content == slow.content
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)


@pytest.mark.parametrize(
    ("user", "params", "status"),
    [
        ("nobody", {"fallback": "none"}, 404),
        ("u5", {"k": "0"}, 422),
        ("u5", {"k": "1001"}, 422),
        ("u5", {"k": "ten"}, 422),
        ("u5", {"k": "-3"}, 422),
        ("u5", {"exclude_seen": "maybe"}, 422),
    ],
)
def test_everything_else_falls_through_to_the_documented_errors(client, model, user, params, status):
    client.get(f"/v1/models/{model}/users/u5/recommendations")  # model loaded and its name remembered
    response, hot = _get(client, f"/v1/models/{model}/users/{user}/recommendations", **params)
    assert not hot
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_repeated_parameter_falls_through(client, model):
    client.get(f"/v1/models/{model}/users/u5/recommendations")
    response, hot = _get(client, f"/v1/models/{model}/users/u5/recommendations?k=2&k=3")
    assert response.status_code == 200 and not hot


def test_hot_answers_are_counted_in_metrics_and_timed_under_the_route(client, model):
    for _ in range(3):
        assert client.get(f"/v1/models/{model}/users/u5/recommendations").status_code == 200
    text = client.get("/metrics").text
    answered = next(line for line in text.splitlines() if line.startswith("unfold_hot_path_answers_total"))
    assert float(answered.split()[-1]) >= 2
    assert 'route="/v1/models/{model_id}/users/{user}/recommendations",status="200"' in text


def test_concurrent_requests_are_answered_together_and_each_gets_its_own_answer(client, model):
    import asyncio

    import httpx

    users = [f"u{i}" for i in range(0, 60, 3)]
    # Answers one at a time first (each its own batch), then all at once over one event loop.
    alone = {u: client.get(f"/v1/models/{model}/users/{u}/recommendations", params={"k": 4}).content for u in users}
    middleware = client.app.middleware_stack
    while not hasattr(middleware, "coalescer"):
        middleware = middleware.app
    batches_before = middleware.coalescer.batches

    async def all_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(http.get(f"/v1/models/{model}/users/{u}/recommendations", params={"k": 4}) for u in users)
            )

    together = asyncio.run(all_at_once())
    assert [r.content for r in together] == [alone[u] for u in users]
    assert middleware.coalescer.batches - batches_before < len(users)


def test_parameters_it_does_not_know_go_to_the_full_route(client, model):
    client.get(f"/v1/models/{model}/users/u5/recommendations")
    response, hot = _get(client, f"/v1/models/{model}/users/u5/recommendations", exclude="i1")
    assert response.status_code == 200 and not hot


def test_keys_and_tenants_get_the_same_answers_on_both_paths(tmp_path: Path):
    from tests.api.test_tenants import as_tenant, bearer, make_settings, new_key, train

    settings = make_settings(tmp_path)
    acme_key, globex_key = new_key(settings, "acme")[1], new_key(settings, "globex")[1]
    app = create_app(settings)
    acme, globex = as_tenant(app, acme_key), as_tenant(app, globex_key)
    anonymous = TestClient(app, raise_server_exceptions=False)
    _, _, model = train(acme, tmp_path, "acme")
    url = f"/v1/models/{model}/users/u5/recommendations"

    def get(client: TestClient, path: str, **headers: str) -> tuple[object, bool]:
        before = app.state.hot_path.answered
        response = client.get(path, headers=headers or None)
        return response, app.state.hot_path.answered == before + 1

    slow, hot = get(acme, url)
    assert slow.status_code == 200 and not hot
    fast, hot = get(acme, url)
    assert hot and fast.content == slow.content
    # The same key with the scheme spelled differently: both paths accept it alike.
    fast, hot = get(anonymous, url, Authorization=f"bearer {acme_key}")
    assert hot and fast.content == slow.content
    # Another tenant, no key, a wrong key: never the hot path, and the route's 404 / 401.
    theirs, hot = get(globex, url)
    assert theirs.status_code == 404 and not hot
    missing, _ = get(globex, "/v1/models/mdl_nope/users/u5/recommendations")
    assert theirs.text.replace(model, "mdl_nope") == missing.text
    for headers in ({}, {"Authorization": "Bearer unf_wrong"}, {"Authorization": f"Basic {acme_key}"}):
        refused, hot = get(anonymous, url, **headers)
        assert refused.status_code == 401 and not hot, headers
        assert refused.headers["www-authenticate"] == "Bearer"
    # globex looking the name up did not make acme's model reachable for it, nor change acme's answer.
    assert get(globex, url)[0].status_code == 404
    again, hot = get(anonymous, url, **bearer(acme_key))
    assert hot and again.content == slow.content
