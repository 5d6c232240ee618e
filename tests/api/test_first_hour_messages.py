"""Messages that say what is wrong, and what to do instead, for the mistakes of a first hour."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services.job_state import model_id_for
from tests.helpers import planted_csv, upload

SMALL = {"dim": 4, "wals": {"iterations": 2}}


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("lines.json", '{"user":"u1","item":"i1"}\n{"user":"u2","item":"i2"}\n'),
        ("events.jsonl", '{"user":"u1","item":"i1","weight":2}\n{"user":"u2","item":"i2","weight":1}\n'),
        ("array.txt", '[\n  {"user": "u1", "item": "i1"},\n  {"user": "u2", "item": "i2"}\n]\n'),
    ],
)
def test_a_json_upload_is_refused_naming_the_accepted_formats(client, tmp_path: Path, name: str, text: str):
    r = upload(client, _file(tmp_path, name, text))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "JSON lines are not accepted" in detail.replace("JSON and JSON lines", "JSON lines"), detail
    assert all(fmt in detail for fmt in ("CSV", "TSV", "Parquet", "MovieLens")), detail
    assert "is not a number" not in detail


def test_a_table_whose_ids_start_with_a_bracket_uploads_with_an_explicit_format(client, tmp_path: Path):
    path = _file(tmp_path, "brackets.csv", "[u1],i1\n[u2],i2\n")
    assert upload(client, path).status_code == 422  # auto: it looks like JSON
    r = upload(client, path, format="csv")
    assert r.status_code == 201 and r.json()["n_users"] == 2, r.text


def test_a_header_without_an_item_column_says_which_columns_were_taken(client, tmp_path: Path):
    r = upload(client, _file(tmp_path, "uw.csv", "user,weight\nu1,1\nu2,3\n"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "there is no item column" in detail and "'weight' as the weight" in detail, detail
    assert "item_column" in detail and "found 2" not in detail


def test_a_body_that_is_not_json_says_so_at_the_body(client):
    r = client.post("/v1/jobs", content=b"dataset_id=ds_1", headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"][0]["field"] == "body"
    assert problem["detail"].startswith("body: not valid JSON (Expecting value at character 0)"), problem
    form = client.post("/v1/jobs", data={"dataset_id": "ds_1"})
    assert "content-type: application/json" in form.json()["detail"], form.text


def test_cancelling_a_finished_job_is_a_409_that_says_it_had_ended(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds, **SMALL}).json()
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["job_id"] == job["id"] and problem["job_status"] == "succeeded"
    assert "has already succeeded" in problem["detail"] and "nothing was cancelled" in problem["detail"], problem
    # A second cancel of a cancelled job is refused the same way.
    client.app.state.enqueue = lambda job_id: None
    queued = client.post("/v1/jobs", json={"dataset_id": ds, **SMALL}).json()
    assert client.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 202
    again = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert again.status_code == 409 and again.json()["job_status"] == "cancelled"


def test_an_unknown_users_404_points_to_fold_in(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds, **SMALL}).json()
    model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
    r = client.get(f"/v1/models/{model}/users/nobody/recommendations", params={"fallback": "none"})
    assert r.status_code == 404
    assert "fold-in" in r.json()["detail"] and f"/v1/models/{model}/recommendations" in r.json()["detail"]


def test_the_model_of_a_job_still_training_says_so(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
    client.app.state.enqueue = lambda job_id: None  # no worker: the job stays queued
    job = client.post("/v1/jobs", json={"dataset_id": ds, **SMALL}).json()
    model_id = model_id_for(job["id"])  # the id it will have
    r = client.get(f"/v1/models/{model_id}")
    assert r.status_code == 404 and "queued" in r.json()["detail"] and job["id"] in r.json()["detail"]
    # Another id is just missing, and says nothing about jobs.
    assert "job" not in client.get("/v1/models/mdl_nothing").json()["detail"]
