"""The OpenAPI contract, fuzzed: schemathesis drives every operation of /openapi.json in-process.

The API runs on SQLite with training inline (task_always_eager), behind an API key, with a
dataset, a trained model and an alias already there, so generated requests reach real code:
path ids are often swapped for the real ones. Low training limits keep any job a generated spec
starts cheap. Checks: no 5xx, every status code, content type and body documented. Under CI=true
the examples are derandomised (a run is reproducible); elsewhere each run explores new ones.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.app import create_app
from app.config import Settings
from app.db import get_sessionmaker
from app.migrate import upgrade
from app.services.api_keys import create_key
from tests.helpers import planted_csv
from tests.ndjson_serializer import ndjson  # noqa: F401  (registers the NDJSON serializer)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Built at import so that schemathesis can read /openapi.json when pytest collects this module
# (its fixture-based loader does not work with this pytest); the database and the seeding wait for
# the `seeded` fixture. Cheap: no migration, no data, nothing else runs here.
_FOLDER = tempfile.TemporaryDirectory(prefix="unfold-schemathesis-")
CONFIG = Settings(
    var_dir=Path(_FOLDER.name) / "var",
    task_always_eager=True,
    max_upload_mb=1,
    max_body_mb=1,
    # Any job a generated spec starts on the real dataset stays small.
    max_dim=8,
    max_wals_iterations=2,
    max_sgd_epochs=1,
)
APP = create_app(CONFIG)
MAX_EXAMPLES = 25
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", APP, config=schemathesis.Config.from_dict({"generation": {"max-examples": MAX_EXAMPLES}})
)


@dataclass
class Seeded:
    client: TestClient
    headers: dict[str, str]
    ids: dict[str, str]  # path parameter name -> a real value


# Session-scoped: its teardown removes the folder (and database) the module-level app uses, so it must run
# once, however the tests of this module are spread among others (pytest --random-order-bucket=global).
@pytest.fixture(scope="session")
def seeded() -> Iterator[Seeded]:
    upgrade(CONFIG.resolved_database_url)
    with get_sessionmaker(CONFIG.resolved_database_url)() as session:
        _, key = create_key(session, "fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(APP, raise_server_exceptions=False) as client:
        path = planted_csv(Path(_FOLDER.name) / "p.csv", 30, 20, per_user=6)
        with path.open("rb") as fh:
            ds = client.post("/v1/datasets", files={"file": ("p.csv", fh)}, headers=headers).json()
        spec = {"dataset_id": ds["id"], "dim": 4, "wals": {"iterations": 2}}
        job = client.post("/v1/jobs", json=spec, headers=headers).json()
        job = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
        assert job["status"] == "succeeded", job
        model = job["model_id"]
        assert client.put("/v1/aliases/prod", json={"model_id": model}, headers=headers).status_code == 200
        # Item and user attributes and a named filter (also "prod": the `name` of both paths), so their reads find them.
        items = {"file": ("items.csv", b"item,colour\ni1,red\ni2,blue\n")}
        assert client.post(f"/v1/datasets/{ds['id']}/items", files=items, headers=headers).status_code == 200
        users = {"file": ("users.csv", b"user,country\nu1,fr\nu2,de\n")}
        assert client.post(f"/v1/datasets/{ds['id']}/users", files=users, headers=headers).status_code == 200
        red = {"expression": "colour = 'red'"}
        assert client.put("/v1/filters/prod", json=red, headers=headers).status_code == 200
        ids = {
            "dataset_id": ds["id"],
            "job_id": job["id"],
            "model_id": model,
            "name": "prod",
            "user": "u1",
            "item": "i1",
        }
        yield Seeded(client, headers, ids)
    _FOLDER.cleanup()


def _use_real_ids(case: Any, ids: dict[str, str]) -> None:
    """Three cases in four get the real ids (in the path, or a job's dataset), so requests reach past the 404s.

    Deletes keep their generated ids: the seeded resources must outlive the run.
    """
    digest = hashlib.sha256(repr((case.path_parameters, case.body)).encode()).digest()
    if case.method.upper() == "DELETE" or digest[0] % 4 == 0:
        return
    for name in case.path_parameters or {}:
        if name in ids:
            case.path_parameters[name] = ids[name]
    if case.path == "/v1/jobs" and isinstance(case.body, dict) and "dataset_id" in case.body:
        case.body["dataset_id"] = ids["dataset_id"]


# (method, path template) -> status codes answered during the run.
ANSWERS: dict[tuple[str, str], set[int]] = defaultdict(set)


# Hypothesis settings of every generated request in this module.
FUZZ = settings(
    deadline=None, database=None, derandomize=os.environ.get("CI") == "true", suppress_health_check=list(HealthCheck)
)


@schema.parametrize()
@FUZZ
def test_openapi_contract(case: Any, seeded: Seeded):
    _use_real_ids(case, seeded.ids)
    response = case.call_and_validate(headers=seeded.headers, checks=CHECKS)
    ANSWERS[(case.method.upper(), case.path)].add(response.status_code)


# Hand-written requests that must succeed (or fail in a documented way), checked the same way:
# generated data rarely makes a valid training spec or a vector of the model's dimension.
EXPLICIT = [
    ("POST", "/v1/jobs", {}, None, {"dataset_id": "{dataset_id}", "dim": 4, "wals": {"iterations": 1}}, 202),
    (
        "POST",
        "/v1/jobs",
        {},
        None,
        {"dataset_id": "{dataset_id}", "algorithm": "sgd", "dim": 4, "sgd": {"epochs": 1}},
        202,
    ),
    ("POST", "/v1/jobs", {}, None, {"dataset_id": "{dataset_id}", "dim": 9}, 422),  # over UNFOLD_MAX_DIM
    ("POST", "/v1/jobs", {}, None, {"dataset_id": "ds_nothing", "dim": 4, "wals": {"iterations": 1}}, 404),
    ("POST", "/v1/jobs", {}, None, {"dataset_id": "x" * 40, "pad": ["y" * 1000] * 1100}, 413),
    ("POST", "/v1/jobs/{job_id}/cancel", {"job_id"}, None, None, 409),  # the seeded job has succeeded
    ("GET", "/v1/jobs/{job_id}/events", {"job_id"}, None, None, 200),
    ("GET", "/v1/models/{model_id}/users/{user}/recommendations", {"model_id", "user"}, {"k": 3}, None, 200),
    # A user the model never saw: popular items by default (docs/catalogue.md), the 404 with fallback none.
    ("GET", "/v1/models/{model_id}/users/{user}/recommendations", {"model_id"}, {"k": 3}, None, 200),
    (
        "GET",
        "/v1/models/{model_id}/users/{user}/recommendations",
        {"model_id"},
        {"k": 3, "fallback": "none"},
        None,
        404,
    ),
    (
        "GET",
        "/v1/models/{model_id}/users/{user}/recommendations",
        {"model_id", "user"},
        {"filter": "colour = 'red'"},
        None,
        200,
    ),
    (
        "GET",
        "/v1/models/{model_id}/users/{user}/recommendations",
        {"model_id", "user"},
        {"filter": "size > 1"},
        None,
        422,
    ),
    ("GET", "/v1/models/{model_id}/items/{item}/similar", {"model_id", "item"}, {"k": 2}, None, 200),
    ("POST", "/v1/models/{model_id}/recommendations", {"model_id"}, None, {"items": ["i1", "i2", "zz"], "k": 3}, 200),
    ("POST", "/v1/models/{model_id}/recommendations/batch", {"model_id"}, None, {"users": ["u1", "zz"], "k": 2}, 200),
    ("POST", "/v1/models/{model_id}/neighbors", {"model_id"}, None, {"vector": [0.5, 0.1, 0.2, 0.3], "k": 2}, 200),
    ("POST", "/v1/models/{model_id}/neighbors", {"model_id"}, None, {"vector": [0.5], "k": 2}, 422),
    # Numbers beyond float32 (factors and queries are float32): refused, not overflowed into inf.
    ("POST", "/v1/models/{model_id}/neighbors", {"model_id"}, None, {"vector": [1e42, 0.0, 0.0, 0.0]}, 422),
    ("POST", "/v1/models/{model_id}/recommendations", {"model_id"}, None, {"items": ["i1"], "weights": [1e300]}, 422),
    (
        "POST",
        "/v1/models/{model_id}/recommendations",
        {"model_id"},
        None,
        {"items": ["i1", "i1"], "weights": [3e38, 3e38]},
        422,
    ),
    ("GET", "/v1/models/{model_id}/embedding-map", {"model_id"}, None, None, 200),
    ("GET", "/v1/datasets/{dataset_id}/events", {"dataset_id"}, None, None, 200),
    ("GET", "/v1/datasets/{dataset_id}/versions", {"dataset_id"}, None, None, 200),
    ("POST", "/v1/datasets/{dataset_id}/events", {"dataset_id"}, None, {"events": [{"user": "u1", "item": "i2"}]}, 200),
    ("POST", "/v1/datasets/{dataset_id}/events", {"dataset_id"}, None, {"events": [{"user": "u1", "weight": -1}]}, 422),
    ("PUT", "/v1/aliases/{name}", set(), None, {"model_id": "{model_id}"}, 200),
    (
        "POST",
        "/v1/tuning",
        {},
        None,
        {
            "spec": {"dataset_id": "{dataset_id}", "dim": 4, "wals": {"iterations": 1}},
            "search": {"params": {"wals.l2": [1.0, 10.0]}},
        },
        202,
    ),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("method", "path", "real", "query", "body", "status"),
    EXPLICIT,
    ids=[f"{m} {p} {s}" for m, p, _, _, _, s in EXPLICIT],
)
def test_explicit_requests_conform(seeded: Seeded, method, path, real, query, body, status):
    operation = schema[path][method]
    names = {n for n in seeded.ids if "{" + n + "}" in path}
    # Path parameters: the real value, or one that names nothing (an alias name the run never created).
    params = {n: seeded.ids[n] if n in real else ("staging" if n == "name" else "nothing") for n in names}
    kwargs: dict[str, Any] = {"path_parameters": params, "query": query}
    if body is not None:
        kwargs |= {"body": _fill(body, seeded.ids), "media_type": "application/json"}
    case = operation.Case(**kwargs)
    response = case.call_and_validate(headers=seeded.headers, checks=CHECKS)
    assert response.status_code == status, response.text


def test_an_upload_and_its_deletion_conform(seeded: Seeded):
    upload = schema["/v1/datasets"]["POST"].Case(
        body={"file": b"user,item\nu1,i1\nu2,i2\nu1,i2\n", "name": "tiny"}, media_type="multipart/form-data"
    )
    response = upload.call_and_validate(headers=seeded.headers, checks=CHECKS)
    assert response.status_code == 201, response.text
    delete = schema["/v1/datasets/{dataset_id}"]["DELETE"].Case(path_parameters={"dataset_id": response.json()["id"]})
    assert delete.call_and_validate(headers=seeded.headers, checks=CHECKS).status_code == 204


def test_an_alias_and_its_deletion_conform(seeded: Seeded):
    # One test, so the deletion never depends on another test having created the alias first.
    alias = {"name": "short-lived"}
    put = schema["/v1/aliases/{name}"]["PUT"].Case(
        path_parameters=alias, body={"model_id": seeded.ids["model_id"]}, media_type="application/json"
    )
    assert put.call_and_validate(headers=seeded.headers, checks=CHECKS).status_code == 200
    delete = schema["/v1/aliases/{name}"]["DELETE"].Case(path_parameters=alias)
    assert delete.call_and_validate(headers=seeded.headers, checks=CHECKS).status_code == 204


def test_without_a_key_the_answer_is_a_documented_401(seeded: Seeded):
    case = schema["/v1/models/{model_id}"]["GET"].Case(path_parameters={"model_id": seeded.ids["model_id"]})
    assert case.call_and_validate(checks=CHECKS).status_code == 401


def _explore(seeded: Seeded) -> None:
    """Send test_openapi_contract's generated requests (its settings, without its checks), recording the answers."""
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(FUZZ, max_examples=MAX_EXAMPLES)
        @given(case=operation.as_strategy())
        def send(case: Any) -> None:
            _use_real_ids(case, seeded.ids)
            ANSWERS[(case.method.upper(), case.path)].add(case.call(headers=seeded.headers).status_code)

        send()


def test_the_run_reached_real_code(seeded: Seeded):
    """The generated requests were answered by real code, not only by 4xx: what the contract test recorded, or
    (when this test runs alone or first) the same generation run here."""
    documented = {(method.upper(), path) for path, ops in APP.openapi()["paths"].items() for method in ops}
    if not documented <= set(ANSWERS):
        _explore(seeded)
    assert documented <= set(ANSWERS), documented - set(ANSWERS)
    # Every read of a seeded resource was answered 200 at least once (no tuning run is seeded).
    reads = [(m, p) for m, p in documented if m == "GET" and "tuning_id" not in p]
    assert all(200 in ANSWERS[op] for op in reads), {op: ANSWERS[op] for op in reads}


def test_the_key_is_needed(seeded: Seeded):
    # The run above is authenticated; without the key the API refuses, so the run reached real code.
    assert seeded.client.get("/v1/datasets").status_code == 401
    assert seeded.client.get("/v1/datasets", headers=seeded.headers).status_code == 200


def test_every_operation_documents_its_errors_as_problems(seeded: Seeded):
    spec = seeded.client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    assert "application/problem+json" in response.get("content", {}), (method, path, status)
            if path.startswith("/v1"):
                assert "401" in operation["responses"], (method, path)
