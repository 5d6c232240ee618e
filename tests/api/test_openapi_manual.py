"""/docs as a usable manual: every operation has a summary, every field and parameter a description,
every request body and success answer an example, and every example is one the API accepts or sends
(it validates against its pydantic model and the OpenAPI document's own schema)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.api import catalogue_schemas, examples, retrain_schemas, schemas
from app.api.app import create_app
from app.api.problems import FieldError, Problem
from app.api.routes.health import Readiness
from app.config import Settings
from app.migrate import upgrade
from app.services.retrain_policies import PolicyIn
from app.spec import SPEC_EXAMPLES, TrainingSpec
from app.tuning_spec import Range, SearchSpec, plan_trials
from tests.helpers import planted_csv, upload

METHODS = ("get", "put", "post", "delete", "patch")

# Every model whose schema can appear in the document, with whether the API sends it (answers must
# round-trip exactly: the example is byte for byte what the API would serialise from it).
ANSWERS: list[type[BaseModel]] = [
    schemas.DatasetOut,
    schemas.JobOut,
    schemas.ModelOut,
    schemas.AliasOut,
    schemas.Recommendations,
    schemas.UserRecommendations,
    schemas.FoldInRecommendations,
    schemas.BatchRecommendations,
    schemas.EmbeddingMapOut,
    schemas.TuningOut,
    Readiness,
    catalogue_schemas.CatalogueOut,
    catalogue_schemas.ItemsUploadOut,
    catalogue_schemas.ItemAttributesOut,
    catalogue_schemas.UsersUploadOut,
    catalogue_schemas.UserAttributesOut,
    catalogue_schemas.FilterOut,
    catalogue_schemas.FilterList,
    retrain_schemas.AliasDetail,
    retrain_schemas.AliasList,
    retrain_schemas.PolicyOut,
    retrain_schemas.RetrainOut,
    schemas.Page[schemas.DatasetOut],
    schemas.Page[schemas.JobOut],
    schemas.Page[schemas.ModelOut],
    schemas.Page[schemas.TuningOut],
]
REQUESTS: list[type[BaseModel]] = [
    TrainingSpec,
    SearchSpec,
    schemas.TuningIn,
    schemas.AliasIn,
    schemas.FoldInRequest,
    schemas.BatchRequest,
    schemas.NeighborsRequest,
    catalogue_schemas.FilterIn,
    PolicyIn,
]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(Settings(var_dir=tmp_path_factory.mktemp("var")))
    return app.openapi()


@pytest.fixture
def queued_client(tmp_path: Path) -> Iterator[TestClient]:
    """An API whose jobs stay queued (a folder broker nobody reads): submitting is all that runs."""
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=False)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _bodies(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, media type, media object) of every request body and every 2xx answer with content."""
    for where, operation in _operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            yield f"{where} request", media_type, media
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                for media_type, media in response.get("content", {}).items():
                    yield f"{where} {status}", media_type, media


def _examples(document: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """The media type's own example(s), references to components/examples resolved: what Swagger UI shows."""
    found = [media["example"]] if "example" in media else []
    for example in media.get("examples", {}).values():
        if "$ref" in example:
            example = document["components"]["examples"][example["$ref"].rsplit("/", 1)[-1]]
        found.append(example["value"])
    return found


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    # The components ride along under the root so that "#/components/schemas/..." references resolve.
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


def _errors(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in _validator(document, schema).iter_errors(instance)
    ]


def _sse(text: str) -> list[tuple[str, Any]]:
    """(event, data) of each message of a text/event-stream body; comment blocks are skipped."""
    assert text.endswith("\n\n"), "an event stream's messages end with a blank line"
    messages = []
    for block in text.split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if fields:
            messages.append((fields["event"], json.loads(fields["data"])))
    return messages


def test_every_operation_has_a_summary(document):
    missing = [where for where, operation in _operations(document) if not operation.get("summary")]
    assert not missing, f"operations without a summary: {missing}"
    assert len(list(_operations(document))) >= 25  # the walk found the API


def test_every_parameter_has_a_description(document):
    missing = [
        f"{where} {parameter['in']} {parameter['name']}"
        for where, operation in _operations(document)
        for parameter in operation.get("parameters", [])
        if not parameter.get("description")
    ]
    assert not missing, f"parameters without a description: {missing}"


def _properties(schema: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every (dotted name, property schema) of a schema, nested inline schemas included (not examples)."""
    if isinstance(schema, dict):
        for name, prop in schema.get("properties", {}).items():
            yield f"{where}.{name}", prop
            yield from _properties(prop, f"{where}.{name}")
        for key, child in schema.items():
            if key not in ("properties", "examples", "example", "default", "const", "enum"):
                yield from _properties(child, where)
    elif isinstance(schema, list):
        for child in schema:
            yield from _properties(child, where)


def test_every_schema_field_has_a_description(document):
    schemas_ = document["components"]["schemas"]
    fields = [
        (name, prop) for schema_name, schema in schemas_.items() for name, prop in _properties(schema, schema_name)
    ]
    missing = sorted({name for name, prop in fields if not prop.get("description")})
    assert not missing, f"{len(missing)} fields without a description: {missing}"
    # The walk did look: the spec's nested blocks and the upload form are in there.
    names = {name for name, _ in fields}
    assert {"TrainingSpec.dataset_id", "NegativesSpec.strategy", "Problem.detail"} <= names
    assert any(name.endswith(".min_weight") for name in names)


def test_every_request_body_and_success_answer_has_an_example(document):
    bodies = list(_bodies(document))
    missing = [f"{where} {media_type}" for where, media_type, media in bodies if not _examples(document, media)]
    assert not missing, f"bodies without an example: {missing}"
    # A body described by a model has the model's examples on its schema too.
    bare = [
        f"{where} {media_type}"
        for where, media_type, media in bodies
        if media_type == "application/json"
        and "$ref" in media.get("schema", {})
        and not _resolve(document, media["schema"]).get("examples")
    ]
    assert not bare, f"models without examples: {bare}"
    kinds = {media_type for _, media_type, _ in bodies}
    assert {"application/json", "multipart/form-data", "text/event-stream"} <= kinds


def test_every_json_example_validates_against_the_documents_schema(document):
    checked = 0
    for where, media_type, media in _bodies(document):
        if media_type == "text/event-stream":
            continue
        for example in _examples(document, media):
            errors = _errors(document, media["schema"], example)
            assert not errors, f"{where} {media_type}: example does not match its schema: {errors}"
            checked += 1
    assert checked >= 30
    # Examples of schemas that are only ever nested (the search, a range) validate too.
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            errors = _errors(document, {"$ref": f"#/components/schemas/{name}"}, example)
            assert not errors, f"{name}: example does not match its schema: {errors}"


def test_examples_in_the_document_keep_their_nulls(document):
    # FastAPI drops None from the whole document (exclude_none); app.api.docs puts the examples back.
    page = document["paths"]["/v1/jobs"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert page["items"] == [examples.JOB_SUCCEEDED] and page["items"][0]["error"] is None
    cancel = document["paths"]["/v1/jobs/{job_id}/cancel"]["post"]["responses"]["202"]["content"]["application/json"]
    assert [(j["status"], j["cancel_requested"]) for j in _examples(document, cancel)] == [
        ("running", True),
        ("cancelled", True),
    ]
    assert document["components"]["schemas"]["JobOut"]["examples"][1]["model_id"] is None
    [queued] = _examples(
        document, document["paths"]["/v1/jobs"]["post"]["responses"]["202"]["content"]["application/json"]
    )
    assert queued["status"] == "queued" and queued["progress"] is None and queued["started_at"] is None
    answers = document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert [job["status"] for job in _examples(document, answers)] == ["succeeded", "running", "queued"]


def test_the_schema_check_would_catch_a_bad_example(document):
    # The validator is not vacuous: a wrong type, a missing field and an unknown spec field all fail.
    job = {"$ref": "#/components/schemas/JobOut"}
    assert _errors(document, job, {**examples.JOB_SUCCEEDED, "attempts": "one"})
    assert _errors(document, job, {k: v for k, v in examples.JOB_SUCCEEDED.items() if k != "status"})
    spec = {"$ref": "#/components/schemas/TrainingSpec"}
    assert _errors(document, spec, {"dataset_id": "ds_x", "wals": {"l2_reg": 1}})


@pytest.mark.parametrize("model", ANSWERS, ids=lambda m: m.__name__)
def test_answer_examples_are_what_the_api_sends(model):
    found = model.model_json_schema().get("examples", [])
    assert found, f"{model.__name__} has no example"
    for example in found:
        assert model.model_validate(example).model_dump(mode="json") == example


@pytest.mark.parametrize("model", REQUESTS, ids=lambda m: m.__name__)
def test_request_examples_validate(model):
    found = model.model_json_schema().get("examples", [])
    assert found, f"{model.__name__} has no example"
    for example in found:
        model.model_validate(example)


def test_problem_examples_validate():
    for model in (Problem, FieldError, Range):
        for example in model.model_json_schema().get("examples", []):
            model.model_validate(example)


def test_the_event_stream_example_is_a_job_followed_to_its_end(document):
    media = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    [text] = _examples(document, media)
    messages = _sse(text)
    assert [event for event, _ in messages][-1] == "end"
    assert all(event == "progress" for event, _ in messages[:-1]) and len(messages) >= 3
    job_schema = {"$ref": "#/components/schemas/JobOut"}
    for event, data in messages:
        if event == "progress":
            assert set(data) == {"id", "status", "progress"}
        else:
            assert not _errors(document, job_schema, data)
            assert schemas.JobOut.model_validate(data).status == "succeeded"


def test_training_spec_examples_are_named_on_post_jobs(document):
    media = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert set(media["examples"]) == set(SPEC_EXAMPLES)
    assert all(example["summary"] for example in media["examples"].values())
    assert {e["value"]["algorithm"] for e in media["examples"].values()} == {"wals", "sgd"}


def test_training_spec_examples_are_accepted_by_post_jobs(queued_client, tmp_path: Path):
    dataset = upload(queued_client, planted_csv(tmp_path / "p.csv")).json()["id"]
    for name, example in SPEC_EXAMPLES.items():
        body = {**example["value"], "dataset_id": dataset}
        r = queued_client.post("/v1/jobs", json=body)
        assert r.status_code == 202, (name, r.text)
        job = r.json()
        # The job records the dataset version it trains on: the latest (the upload, 1) when the spec names none.
        stored = {**TrainingSpec.model_validate(body).model_dump(mode="json"), "dataset_version": 1}
        assert job["status"] == "queued" and job["spec"] == stored
    # As written, the examples name a dataset this server does not have: a 404 that says which.
    r = queued_client.post("/v1/jobs", json=SPEC_EXAMPLES["minimal"]["value"])
    assert r.status_code == 404 and examples.DATASET_ID in r.json()["detail"]


def test_tuning_examples_are_accepted_by_post_tuning(queued_client, tmp_path: Path):
    dataset = upload(queued_client, planted_csv(tmp_path / "p.csv")).json()["id"]
    for example in examples.TUNING_IN:
        body = {"spec": {**example["spec"], "dataset_id": dataset}, "search": example["search"]}
        parsed = schemas.TuningIn.model_validate(body)
        assert plan_trials(parsed.spec, parsed.search).trials
        r = queued_client.post("/v1/tuning", json=body)
        assert r.status_code == 202, r.text


def test_docs_page_and_document_are_served(queued_client):
    r = queued_client.get("/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text
    r = queued_client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json() == json.loads(json.dumps(queued_client.app.openapi()))  # type: ignore[attr-defined]
