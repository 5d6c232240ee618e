"""Text PostgreSQL cannot store (NUL, lone surrogates) is refused at the edge, alike on both databases.

PostgreSQL's text type holds no NUL byte and its UTF-8 encoding no lone surrogate; SQLite stores
either. Without a check at the edge the same request was a 404 on SQLite and a 500 on PostgreSQL.
In a path it is a 404 (nothing can be named so), in a query parameter, a JSON body or a form field a 422.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def client(request, tmp_path_factory) -> Iterator[TestClient]:
    from contextlib import nullcontext

    from tests.services import postgres_database

    tmp = tmp_path_factory.mktemp(request.param)
    database = postgres_database() if request.param == "postgresql" else nullcontext(None)
    with database as url:
        settings = Settings(var_dir=tmp / "var", database_url=url, task_always_eager=True, max_upload_mb=5)
        upgrade(settings.resolved_database_url)
        with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
            yield test_client


PATHS = [
    "/v1/datasets/ds_%00",
    "/v1/datasets/%00",
    "/v1/jobs/job_%00",
    "/v1/jobs/job_%00/events",
    "/v1/models/mdl_%00",
    "/v1/models/%00/embedding-map",
    "/v1/models/mdl_%00/users/u1/recommendations",
    "/v1/models/mdl_%00/items/i1/similar",
    "/v1/aliases/a%00",
    "/v1/tuning/tun_%00",
]


@pytest.mark.parametrize("path", PATHS)
def test_nul_in_a_path_is_a_404(client, path):
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/jobs", "/v1/models"])
@pytest.mark.parametrize("query", ["cursor=%00", "cursor=abc%00def", "limit=5&cursor=%00"])
def test_nul_in_a_query_parameter_is_a_422_naming_it(client, path, query):
    response = client.get(f"{path}?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "cursor"


BODIES = [
    ("POST", "/v1/jobs", '{"dataset_id": "ds_\\u0000"}', "dataset_id"),
    ("POST", "/v1/jobs", '{"dataset_id": "\\ud800"}', "dataset_id"),
    ("PUT", "/v1/aliases/prod", '{"model_id": "mdl_\\u0000"}', "model_id"),
    ("PUT", "/v1/aliases/prod", '{"model_id": "a\\udc00b"}', "model_id"),
    ("POST", "/v1/tuning", '{"spec": {"dataset_id": "\\u0000"}, "search": {}}', "spec.dataset_id"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BODIES)
def test_unstorable_text_in_a_json_body_is_a_422_naming_the_field(client, method, path, body, field):
    response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_escaped_backslashes_and_paired_surrogates_are_fine(client):
    # "\\u0000" is a backslash then "u0000", and "\ud83d\ude00" one emoji: both storable.
    body = '{"dataset_id": "ds_\\\\u0000 \\ud83d\\ude00"}'
    response = client.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 404, response.text


def _multipart(filename: bytes, name: bytes | None) -> bytes:
    """A multipart upload written by hand: httpx would percent-encode a NUL in the file name."""
    disposition = b"--b\r\nContent-Disposition: form-data; "
    body = disposition + b'name="file"; filename="' + filename + b'"\r\n\r\nuser,item\nu1,i1\n\r\n'
    if name is not None:
        body += disposition + b'name="name"\r\n\r\n' + name + b"\r\n"
    return body + b"--b--\r\n"


@pytest.mark.parametrize(("filename", "name", "field"), [(b"a\x00b.csv", None, "file"), (b"ok.csv", b"a\x00b", "name")])
def test_an_upload_named_with_a_nul_is_a_422(client, filename, name, field):
    body = _multipart(filename, name)
    response = client.post("/v1/datasets", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.text
