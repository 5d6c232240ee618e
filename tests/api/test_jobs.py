"""Training jobs through the HTTP API (training runs in-process: task called directly)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import metric_value, planted_csv, upload

SMALL = {"dim": 8, "wals": {"iterations": 4}}


def _model_of(client, job_id: str) -> dict:
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    return client.get(f"/v1/models/{job['model_id']}").json()


def _dataset(client, tmp_path: Path) -> str:
    return upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]


def test_job_runs_to_a_model_with_progress_history_and_metrics(client, tmp_path: Path):
    ds = _dataset(client, tmp_path)
    r = client.post("/v1/jobs", json={"dataset_id": ds, "algorithm": "wals", **SMALL})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = client.get(r.headers["location"]).json()
    assert job["status"] == "succeeded", job
    assert job["progress"]["fraction"] == 1.0 and job["progress"]["unit"] == "iteration"
    fit = [h for h in job["history"] if h["phase"] == "fit"]
    assert [h["step"] for h in fit] == [1, 2, 3, 4]
    assert all("recall@20" in h["metrics"] for h in fit)
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["dim"] == 8 and model["algorithm"] == "wals"
    assert model["spec"]["wals"]["iterations"] == 4 and model["spec"]["wals"]["l2"] is not None
    assert 0.0 <= model["metrics"]["recall@20"] <= 1.0
    assert "popularity" in model["metrics"]["baseline"]


def _nulls(block: dict, prefix: str = "") -> list[str]:
    """The dotted names of the null values in a (nested) spec block."""
    found = []
    for name, value in block.items():
        if isinstance(value, dict):
            found += _nulls(value, f"{prefix}{name}.")
        elif value is None:
            found.append(f"{prefix}{name}")
    return found


def test_default_spec_is_complete(client, tmp_path: Path):
    """A spec naming only the dataset trains, and the model's spec names every value used: trained again as it
    stands, it chooses nothing and records the same settings."""
    from app.spec import TrainingSpec, WALSSpec

    ds = _dataset(client, tmp_path)
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()
    model = _model_of(client, job["id"])
    spec = model["spec"]
    refit = [h for h in client.get(f"/v1/jobs/{job['id']}").json()["history"] if h["phase"] == "refit"]
    assert model["algorithm"] == "wals" and spec["algorithm"] == "wals" and spec["dim"] == model["dim"] == 64
    assert "sgd" not in spec  # only the chosen algorithm's block
    assert model["metrics"]["search"]["trials"]  # what the spec left out was searched
    assert set(TrainingSpec.model_fields) - {"sgd"} <= set(spec)
    assert set(WALSSpec.model_fields) == set(spec["wals"])
    assert _nulls(spec["wals"]) == []
    assert spec["wals"]["l2_scaling"] in ("none", "frequency") and spec["wals"]["l2"] > 0
    assert spec["wals"]["iterations"] == len(refit)  # the refit ran the iterations the spec names
    again = _model_of(client, client.post("/v1/jobs", json=spec).json()["id"])
    assert again["spec"]["wals"] == spec["wals"]
    assert "search" not in again["metrics"]  # everything was named: nothing was searched


def test_bad_specs_are_422_naming_the_field(client, tmp_path: Path):
    ds = _dataset(client, tmp_path)
    cases = [
        ({"dataset_id": ds, "dim": -3}, "dim"),
        ({"dataset_id": ds, "wals": {"l2": -1}}, "wals.l2"),
        ({"dataset_id": ds, "wals": {"solver": "qr"}}, "wals.solver"),
        ({"dataset_id": ds, "evaluation": {"k": [0]}}, "evaluation"),
        ({"dataset_id": ds, "wals": {"l2_reg": 1}}, "wals.l2_reg"),
        ({"dataset_id": ds, "early_stopping": {"metric": "recall@50"}}, "early_stopping"),
        ({}, "dataset_id"),
    ]
    for body, field in cases:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        problem = r.json()
        assert field in problem["detail"], (field, problem)
    # A dataset that is not there (or is another tenant's: the same answer) is not found.
    r = client.post("/v1/jobs", json={"dataset_id": "ds_missing"})
    assert r.status_code == 404 and r.json()["field"] == "dataset_id", r.text


def test_unknown_job_is_404_and_list_filters_by_status(client, tmp_path: Path):
    assert client.get("/v1/jobs/job_nope").status_code == 404
    ds = _dataset(client, tmp_path)
    client.post("/v1/jobs", json={"dataset_id": ds, **SMALL})
    assert len(client.get("/v1/jobs", params={"status": "succeeded"}).json()["items"]) == 1
    assert client.get("/v1/jobs", params={"status": "queued"}).json()["items"] == []
    assert client.get("/v1/jobs", params={"status": "bogus"}).status_code == 422


def test_cancel_a_queued_job(client, settings, tmp_path: Path):
    ds = _dataset(client, tmp_path)
    client.app.state.enqueue = lambda job_id: None  # nothing picks it up: it stays queued
    job = client.post("/v1/jobs", json={"dataset_id": ds, **SMALL}).json()
    assert job["status"] == "queued"
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    # A late delivery of the task must not run it.
    from workers.tasks import train_job

    assert train_job(settings, job["id"]) == "skipped"
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_dataset_in_use_cannot_be_deleted(client, tmp_path: Path):
    ds = _dataset(client, tmp_path)
    client.app.state.enqueue = lambda job_id: None
    client.post("/v1/jobs", json={"dataset_id": ds, **SMALL})
    r = client.delete(f"/v1/datasets/{ds}")
    assert r.status_code == 409 and "queued" in r.json()["detail"]


def test_every_model_reports_folding_and_leakage_when_groups_are_known(client, tmp_path: Path):
    from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv

    path = tmp_path / "planted.csv"
    write_planted_csv(planted_communities(PlantedConfig(users_per_group=100, items_per_group=50, noise=0.05)), path)
    ds = upload(client, path).json()
    assert ds["stats"]["n_item_groups"] == 2
    job = client.post("/v1/jobs", json={"dataset_id": ds["id"], **SMALL}).json()
    model = _model_of(client, job["id"])
    folding = model["metrics"]["folding"]
    assert {"leakage@10", "unreachable@10", "positive_auc", "score_gap"} <= set(folding)
    assert 0.0 <= folding["leakage@10"] <= 1.0 and 0.5 < folding["positive_auc"] <= 1.0
    # Without group labels the label-free proxies are still there.
    plain = client.post("/v1/jobs", json={"dataset_id": _dataset(client, tmp_path), **SMALL}).json()
    plain_model = _model_of(client, plain["id"])
    assert "leakage@10" not in plain_model["metrics"]["folding"]
    assert "unreachable@10" in plain_model["metrics"]["folding"]


def test_metrics_report_training_seconds_by_outcome(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json={'dataset_id': ds, 'dim': 4}).json()['id']}").json()
    assert job["status"] == "succeeded"
    took = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
    text = client.get("/metrics").text
    assert metric_value(text, 'unfold_training_runs_total{status="succeeded"}') == 1
    assert metric_value(text, 'unfold_training_seconds_total{status="succeeded"}') == pytest.approx(took, abs=0.01)
