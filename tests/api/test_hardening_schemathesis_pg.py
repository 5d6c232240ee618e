"""The OpenAPI contract fuzzed on the PostgreSQL shape, NUL bytes included: no server error.

Like test_schemathesis.py (which runs on SQLite), but the database is PostgreSQL, where text with a
NUL or an unpaired surrogate cannot be stored: schemathesis generates such strings (allow-x00, on by
default) for every path, query and body field, and half the cases keep their generated ids so that
those strings reach the lookups. Only `not_a_server_error` is checked here; the SQLite run checks
the rest of the contract.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.api.app import create_app
from app.config import Settings
from app.db import get_engine, get_sessionmaker
from app.migrate import upgrade
from app.services.api_keys import create_key
from tests.helpers import planted_csv
from tests.ndjson_serializer import ndjson  # noqa: F401  (registers the NDJSON serializer)
from tests.services import PG_ADMIN_URL

_FOLDER = tempfile.TemporaryDirectory(prefix="unfold-schemathesis-pg-")
_DB = f"unfold_test_{uuid.uuid4().hex[:12]}"
_URL = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{_DB}"
CONFIG = Settings(
    var_dir=Path(_FOLDER.name) / "var",
    database_url=_URL,
    task_always_eager=True,
    max_upload_mb=1,
    max_body_mb=1,
    max_dim=8,
    max_wals_iterations=2,
    max_sgd_epochs=1,
)
APP = create_app(CONFIG)  # connects to nothing until the fixture has created the database
# The engine the app's authenticator keeps for the whole run: the fixture disposes it with the process's current one.
_APP_ENGINE = get_engine(_URL)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    APP,
    config=schemathesis.Config.from_dict({"generation": {"max-examples": 12, "allow-x00": True}}),
)


# SGD, one epoch, no evaluation split: the cheapest model that answers every query route.
SEED_SPEC = {"algorithm": "sgd", "dim": 4, "sgd": {"epochs": 1}, "evaluation": {"split": "none"}}


# Session-scoped: its teardown removes the folder (and database) the module-level app uses, so it must run
# once, however the tests of this module are spread among others (pytest --random-order-bucket=global).
@pytest.fixture(scope="session")
def seeded() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    import psycopg

    from tests.services import require

    require("PostgreSQL", "127.0.0.1", 5432)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{_DB}"')
    try:
        upgrade(_URL)
        with get_sessionmaker(_URL)() as session:
            _, key = create_key(session, "fuzz")
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(APP, raise_server_exceptions=False) as client:
            with planted_csv(Path(_FOLDER.name) / "p.csv", 30, 20, per_user=6).open("rb") as fh:
                ds = client.post("/v1/datasets", files={"file": ("p.csv", fh)}, headers=headers).json()
            job = client.post("/v1/jobs", json={"dataset_id": ds["id"], **SEED_SPEC}, headers=headers).json()
            job = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
            assert job["status"] == "succeeded", job
            client.put("/v1/aliases/prod", json={"model_id": job["model_id"]}, headers=headers)
            ids = {"dataset_id": ds["id"], "job_id": job["id"], "model_id": job["model_id"], "name": "prod"}
            ids |= {"user": "u1", "item": "i1"}
            yield headers, ids
    finally:
        get_engine(_URL).dispose()
        _APP_ENGINE.dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_DB}" WITH (FORCE)')
        _FOLDER.cleanup()


def _use_real_ids(case: Any, ids: dict[str, str]) -> None:
    """Half the cases get the real ids, so generated query and body strings reach real lookups too."""
    digest = hashlib.sha256(repr((case.path_parameters, case.body, case.query)).encode()).digest()
    if case.method.upper() == "DELETE" or digest[0] % 2 == 0:
        return
    for name in case.path_parameters or {}:
        if name in ids:
            case.path_parameters[name] = ids[name]


@schema.parametrize()
@settings(
    deadline=None, database=None, derandomize=os.environ.get("CI") == "true", suppress_health_check=list(HealthCheck)
)
def test_no_server_error_on_postgresql(case: Any, seeded):
    headers, ids = seeded
    _use_real_ids(case, ids)
    case.call_and_validate(headers=headers, checks=[not_a_server_error])


NUL_REQUESTS = [
    ("GET", "/v1/datasets/ds_%00", None),
    ("GET", "/v1/datasets?cursor=%00", None),
    ("GET", "/v1/models?cursor=a%00", None),
    ("GET", "/v1/models/{model_id}/users/%00/recommendations", None),
    ("GET", "/v1/models/{model_id}/items/a%00b/similar", None),
    ("POST", "/v1/jobs", '{"dataset_id": "ds_\\u0000"}'),
    ("PUT", "/v1/aliases/prod2", '{"model_id": "\\u0000"}'),
    ("POST", "/v1/models/{model_id}/recommendations/batch", '{"users": ["u1", "\\u0000"], "k": 2}'),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_REQUESTS)
def test_nul_requests_are_never_a_server_error_on_postgresql(seeded, method, path, body):
    headers, ids = seeded
    with TestClient(APP, raise_server_exceptions=False) as client:
        response = client.request(
            method,
            path.replace("{model_id}", ids["model_id"]),
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
    assert response.status_code in (404, 422), response.text
