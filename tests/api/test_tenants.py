"""API keys at the edge (401) and tenants everywhere behind it (another tenant's ids are 404)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.db import get_sessionmaker
from app.migrate import upgrade
from app.models import Dataset, Job, Model
from app.services import api_keys
from tests.helpers import planted_csv, upload

SPEC = {"dim": 8, "wals": {"iterations": 3}, "evaluation": {"split": "none"}}
TUNE = {"dim": 8, "wals": {"iterations": 2}}  # tuning needs a held-out split
MISSING = "zz_never_existed"


class Recorder:
    """A tuning dispatch that sends nothing, so a run stays queued."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def trials(self, job_ids: Any) -> None:
        self.sent += job_ids

    def final(self, job_id: str) -> None:
        self.sent.append(job_id)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    settings = Settings(var_dir=tmp / "var", task_always_eager=True, max_upload_mb=5, **overrides)
    upgrade(settings.resolved_database_url)
    return settings


def new_key(settings: Settings, tenant: str, name: str | None = None) -> tuple[str, str]:
    """(key id, plaintext) of a fresh key, written straight to the database as `unfold keys create` does."""
    with get_sessionmaker(settings.resolved_database_url)() as session:
        row, plaintext = api_keys.create_key(session, tenant, name)
        return row.id, plaintext


def as_tenant(app: Any, key: str) -> TestClient:
    return TestClient(app, headers=bearer(key), raise_server_exceptions=False)


def train(client: TestClient, tmp: Path, name: str) -> tuple[str, str, str]:
    """(dataset, job, model) of a tiny WALS model trained by this client's tenant."""
    ds = upload(client, planted_csv(tmp / f"{name}.csv", 60, 40))
    assert ds.status_code == 201, ds.text
    job = client.post("/v1/jobs", json={"dataset_id": ds.json()["id"], **SPEC})
    assert job.status_code == 202, job.text
    done = client.get(f"/v1/jobs/{job.json()['id']}").json()
    assert done["status"] == "succeeded", done
    return ds.json()["id"], done["id"], done["model_id"]


@dataclass
class World:
    """acme owns a dataset, job, model, alias and tuning run; globex owns nothing of acme's; nobody
    (initech) owns nothing at all."""

    app: Any
    settings: Settings
    acme: TestClient
    globex: TestClient
    initech: TestClient
    anonymous: TestClient
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tenants")
    settings = make_settings(tmp)
    keys = {tenant: new_key(settings, tenant)[1] for tenant in ("acme", "globex", "initech")}
    app = create_app(settings)
    acme, globex, initech = (as_tenant(app, keys[t]) for t in ("acme", "globex", "initech"))
    dataset, job, model = train(acme, tmp, "acme")
    assert acme.put("/v1/aliases/acme-prod", json={"model_id": model}).status_code == 200
    dispatch, app.state.tuning_dispatch = app.state.tuning_dispatch, Recorder()
    run = acme.post("/v1/tuning", json={"spec": {"dataset_id": dataset, **TUNE}, "search": {"params": {"dim": [4]}}})
    app.state.tuning_dispatch = dispatch
    assert run.status_code == 202, run.text
    ids = {"dataset": dataset, "job": job, "model": model, "alias": "acme-prod", "tuning": run.json()["id"]}
    ids["trial"] = run.json()["leaderboard"][0]["job_id"]
    yield World(app, settings, acme, globex, initech, TestClient(app, raise_server_exceptions=False), ids)


# Every route that names one of acme's resources, as globex sends it. "{x}" is replaced by acme's id.
CROSS_TENANT = [
    ("GET", "/v1/datasets/{dataset}", None),
    ("DELETE", "/v1/datasets/{dataset}", None),
    ("GET", "/v1/jobs/{job}", None),
    ("GET", "/v1/jobs/{trial}", None),
    ("POST", "/v1/jobs/{job}/cancel", None),
    ("GET", "/v1/jobs/{job}/events", None),
    ("GET", "/v1/models/{model}", None),
    ("GET", "/v1/models/{alias}", None),
    ("DELETE", "/v1/models/{model}", None),
    ("GET", "/v1/aliases/{alias}", None),
    ("DELETE", "/v1/aliases/{alias}", None),
    ("PUT", "/v1/aliases/mine", {"model_id": "{model}"}),
    ("PUT", "/v1/aliases/mine", {"model_id": "{alias}"}),
    ("GET", "/v1/tuning/{tuning}", None),
    ("POST", "/v1/tuning/{tuning}/cancel", None),
    ("GET", "/v1/models/{model}/users/u1/recommendations", None),
    ("GET", "/v1/models/{alias}/users/u1/recommendations", None),
    ("GET", "/v1/models/{model}/users/u1/recommendations?k=3&exclude=i1", None),
    ("GET", "/v1/models/{model}/items/i1/similar", None),
    ("POST", "/v1/models/{model}/recommendations", {"items": ["i1", "i2"], "k": 3}),
    ("POST", "/v1/models/{alias}/recommendations/batch", {"users": ["u1", "u2"], "k": 3}),
    ("POST", "/v1/models/{model}/neighbors", {"vector": [0.1] * 8, "k": 3}),
    ("POST", "/v1/jobs", {"dataset_id": "{dataset}"}),
    ("POST", "/v1/tuning", {"spec": {"dataset_id": "{dataset}"}, "search": {"params": {"dim": [4]}}}),
]


def _fill(template: Any, ids: dict[str, str]) -> Any:
    """The template with each {name} replaced by ids[name]."""
    if isinstance(template, str):
        return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, ids) for v in template]
    return template


def _acme_unchanged(world: World) -> None:
    ids, acme = world.ids, world.acme
    for path in ("datasets/{dataset}", "models/{model}", "models/{alias}", "aliases/{alias}", "tuning/{tuning}"):
        assert acme.get(_fill(f"/v1/{path}", ids)).status_code == 200, path
    job = acme.get(f"/v1/jobs/{ids['job']}").json()
    assert job["status"] == "succeeded" and not job["cancel_requested"]
    assert acme.get(f"/v1/tuning/{ids['tuning']}").json()["status"] == "queued"
    recs = acme.get(f"/v1/models/{ids['alias']}/users/u1/recommendations").json()
    assert recs["model_id"] == ids["model"]


@pytest.mark.parametrize(("method", "path", "body"), CROSS_TENANT)
def test_another_tenants_resource_is_404_exactly_like_a_missing_one(world: World, method, path, body):
    ids = world.ids
    # acme first, so a query finds the model loaded and its name remembered (the hot path's case).
    if method == "GET" and "/users/" in path:
        assert world.acme.get(_fill(path, ids)).status_code == 200
    answered = world.app.state.hot_path.answered
    theirs = world.globex.request(method, _fill(path, ids), json=_fill(body, ids))
    missing = world.globex.request(
        method, _fill(path, dict.fromkeys(ids, MISSING)), json=_fill(body, dict.fromkeys(ids, MISSING))
    )
    assert theirs.status_code == 404, theirs.text
    assert theirs.headers["content-type"] == "application/problem+json"
    assert world.app.state.hot_path.answered == answered  # the hot path never answered globex
    # Nothing tells "someone else's" from "not there": the same answer, the id aside.
    assert missing.status_code == 404
    leaked = theirs.text
    for value in ids.values():
        leaked = leaked.replace(value, MISSING)
    assert leaked == missing.text
    _acme_unchanged(world)


def test_a_tenant_lists_only_its_own(world: World):
    acme_ids = set(world.ids.values())
    for resource, mine in (("datasets", "dataset"), ("jobs", "job"), ("models", "model"), ("tuning", "tuning")):
        assert world.initech.get(f"/v1/{resource}").json() == {"items": [], "next_cursor": None}, resource
        assert not {r["id"] for r in world.globex.get(f"/v1/{resource}").json()["items"]} & acme_ids, resource
        assert world.ids[mine] in {r["id"] for r in world.acme.get(f"/v1/{resource}").json()["items"]}, resource
    assert world.ids["trial"] in {j["id"] for j in world.acme.get("/v1/jobs").json()["items"]}
    assert world.initech.get("/v1/jobs?status=queued").json()["items"] == []


def test_two_tenants_use_the_same_alias_name_independently(world: World, tmp_path: Path):
    _, _, globex_model = train(world.globex, tmp_path, "globex")
    acme_model = world.ids["model"]
    for client, model in ((world.acme, acme_model), (world.globex, globex_model)):
        r = client.put("/v1/aliases/shared", json={"model_id": model})
        assert r.status_code == 200 and r.json()["model_id"] == model, r.text
    for client, model in ((world.acme, acme_model), (world.globex, globex_model)):
        assert client.get("/v1/aliases/shared").json()["model_id"] == model
        assert client.get("/v1/models/shared").json()["id"] == model
        for _ in range(2):  # the second answer comes from the hot path: still each tenant's own model
            assert client.get("/v1/models/shared/users/u1/recommendations").json()["model_id"] == model
        batch = client.post("/v1/models/shared/recommendations/batch", json={"users": ["u1"], "k": 2}).json()
        assert batch["model_id"] == model
    assert world.globex.delete("/v1/aliases/shared").status_code == 204
    assert world.globex.get("/v1/models/shared/users/u1/recommendations").status_code == 404
    assert world.acme.get("/v1/models/shared/users/u1/recommendations").json()["model_id"] == acme_model
    assert world.globex.get("/v1/models").json()["items"][0]["id"] == globex_model
    assert acme_model not in {m["id"] for m in world.globex.get("/v1/models").json()["items"]}


def test_a_tuning_runs_trials_final_job_and_model_belong_to_its_tenant(world: World):
    run = world.acme.post(
        "/v1/tuning", json={"spec": {"dataset_id": world.ids["dataset"], **TUNE}, "search": {"params": {"dim": [4]}}}
    ).json()
    run = world.acme.get(f"/v1/tuning/{run['id']}").json()
    assert run["status"] == "succeeded", run
    with get_sessionmaker(world.settings.resolved_database_url)() as session:
        assert session.get(Model, run["model_id"]).tenant == "acme"
        assert session.get(Job, run["final_job_id"]).tenant == "acme"
        assert session.get(Job, run["leaderboard"][0]["job_id"]).tenant == "acme"
    assert world.globex.get(f"/v1/models/{run['model_id']}").status_code == 404
    assert world.globex.get(f"/v1/jobs/{run['final_job_id']}").status_code == 404
    assert world.acme.get(f"/v1/models/{run['model_id']}").status_code == 200


class _Anything(dict):
    """Path parameters: the ones given, "x" for any other."""

    def __missing__(self, key: str) -> str:
        return "x"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "needs a key"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "Bearer <key>"),
        ({"Authorization": "Bearer"}, "Bearer <key>"),
        ({"Authorization": "Bearer unf_not-a-key"}, "unknown or revoked"),
    ],
)
def test_without_a_valid_key_every_v1_route_is_401(world: World, headers: dict, detail: str):
    paths = {p: ops for p, ops in world.app.openapi()["paths"].items() if p.startswith("/v1")}
    assert len(paths) >= 15
    for template, operations in paths.items():
        path = _fill(template, _Anything(model_id=world.ids["model"], name="acme-prod"))
        for method in operations:
            r = world.anonymous.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"] == "Bearer"
            assert detail in r.json()["detail"]


def test_the_probes_docs_and_metrics_stay_open(world: World):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert world.anonymous.get(path).status_code == 200, path
    assert world.anonymous.get("/").status_code != 401


def test_a_revoked_key_is_refused(world: World):
    key_id, key = new_key(world.settings, "acme", "to revoke")
    with get_sessionmaker(world.settings.resolved_database_url)() as session:
        api_keys.revoke_key(session, key_id)
    r = TestClient(world.app).get("/v1/datasets", headers=bearer(key))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_revocation_takes_effect_within_the_cache_ttl(tmp_path: Path):
    # require_auth as in production: otherwise revoking the only key would open the API to all.
    settings = make_settings(tmp_path, auth_cache_seconds=1.0, require_auth=True)
    key_id, key = new_key(settings, "acme")
    app = create_app(settings)
    client = as_tenant(app, key)
    _, _, model = train(client, tmp_path, "acme")
    url = f"/v1/models/{model}/users/u1/recommendations"
    assert client.get(url).status_code == 200
    hot = app.state.hot_path.answered
    assert client.get(url).status_code == 200 and app.state.hot_path.answered == hot + 1
    with get_sessionmaker(settings.resolved_database_url)() as session:
        api_keys.revoke_key(session, key_id)
    deadline = time.monotonic() + 1.0 + 2.0  # the TTL, and slack for a loaded machine
    while client.get("/v1/datasets").status_code == 200:
        assert time.monotonic() < deadline, "a revoked key was still accepted past the cache TTL"
        time.sleep(0.1)
    for path in ("/v1/datasets", url):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    assert app.state.hot_path.answered == hot + 1


def test_keys_are_looked_up_once_per_ttl_not_once_per_request(tmp_path: Path, monkeypatch):
    settings = make_settings(tmp_path, auth_cache_seconds=60)
    _, key = new_key(settings, "acme")
    lookups: list[str] = []
    resolve = api_keys.resolve
    monkeypatch.setattr(api_keys, "resolve", lambda session, token: lookups.append(token) or resolve(session, token))
    client = as_tenant(create_app(settings), key)
    for _ in range(5):
        assert client.get("/v1/datasets").status_code == 200
    assert lookups == [key]
    for _ in range(3):
        assert client.get("/v1/datasets", headers=bearer("unf_wrong")).status_code == 401
    assert lookups == [key, "unf_wrong"]  # a bad key is remembered as bad too


def test_require_auth_refuses_everything_before_any_key_exists(tmp_path: Path):
    client = TestClient(create_app(make_settings(tmp_path, require_auth=True)), raise_server_exceptions=False)
    assert client.get("/v1/datasets").status_code == 401
    assert client.get("/v1/datasets", headers=bearer("unf_anything")).status_code == 401
    assert client.get("/healthz").status_code == 200


def test_without_keys_everything_is_the_default_tenant_and_a_first_key_closes_the_door(tmp_path: Path):
    settings = make_settings(tmp_path, auth_cache_seconds=0)
    open_client = TestClient(create_app(settings), raise_server_exceptions=False)
    ds = upload(open_client, planted_csv(tmp_path / "p.csv")).json()["id"]
    # Any header is ignored while no key is configured: a client with a stale key keeps working.
    for headers in ({}, bearer("unf_whatever")):
        assert [d["id"] for d in open_client.get("/v1/datasets", headers=headers).json()["items"]] == [ds]
    with get_sessionmaker(settings.resolved_database_url)() as session:
        assert session.get(Dataset, ds).tenant == "default"
    # The first key turns authentication on; rows from before belong to the tenant "default".
    key_id, key = new_key(settings, "default")
    assert open_client.get("/v1/datasets").status_code == 401
    assert [d["id"] for d in open_client.get("/v1/datasets", headers=bearer(key)).json()["items"]] == [ds]
    # Revoking the only key opens the API again (UNFOLD_REQUIRE_AUTH keeps it closed).
    with get_sessionmaker(settings.resolved_database_url)() as session:
        api_keys.revoke_key(session, key_id)
    assert open_client.get("/v1/datasets").status_code == 200
