"""SGD through POST /v1/jobs: every variant, optimizer, loss and negative strategy trains; impossible
combinations are refused with a 422 that says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import planted_csv, upload

TINY = {"dim": 8, "evaluation": {"split": "random", "k": [10]}}
CASES = [
    {"variant": "sgd", "optimizer": "sgd", "loss": "bce", "negatives": {"strategy": "uniform"}},
    {"variant": "minibatch", "optimizer": "adagrad", "loss": "bpr", "negatives": {"strategy": "popularity"}},
    {"variant": "minibatch_sgd", "optimizer": "adam", "loss": "softmax", "negatives": {"strategy": "in_batch"}},
    {"variant": "minibatch_sgd", "optimizer": "adagrad", "loss": "mse", "negatives": {"strategy": "hard"}},
    {"variant": "minibatch_sgd", "optimizer": "adam", "loss": "softmax", "negatives": {"strategy": "mixed"}},
    {"variant": "minibatch", "optimizer": "sgd", "loss": "bce", "negatives": {"strategy": "none"}},
]


@pytest.fixture
def dataset(client, tmp_path: Path) -> str:
    return upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]


@pytest.mark.parametrize("sgd", CASES, ids=lambda c: f"{c['variant']}-{c['loss']}-{c['negatives']['strategy']}")
def test_sgd_job_trains_and_reports_epochs(client, dataset: str, sgd: dict):
    spec = {"dataset_id": dataset, "algorithm": "sgd", **TINY, "sgd": {**sgd, "epochs": 2, "batch_size": 64}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 202, r.text
    job = client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded", job
    assert job["progress"]["unit"] == "epoch"
    assert [h["step"] for h in job["history"] if h["phase"] == "fit"] == [1, 2]
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["algorithm"] == "sgd" and "wals" not in model["spec"]
    assert model["spec"]["sgd"]["negatives"]["strategy"] == sgd["negatives"]["strategy"]
    assert "folding" in model["metrics"] and "recall@10" in model["metrics"]
    recs = client.get(f"/v1/models/{model['id']}/users/u0/recommendations", params={"k": 3}).json()
    assert len(recs["items"]) == 3
    fold = client.post(f"/v1/models/{model['id']}/recommendations", json={"items": ["i1", "i2"], "k": 3})
    assert fold.status_code == 200 and len(fold.json()["items"]) == 3


@pytest.mark.parametrize(
    ("sgd", "reason"),
    [
        ({"variant": "sgd", "negatives": {"strategy": "in_batch"}}, "one example at a time"),
        ({"variant": "minibatch_sgd", "batch_size": 1, "negatives": {"strategy": "mixed"}}, "batch_size"),
        ({"loss": "bpr", "negatives": {"strategy": "none"}}, "negatives"),
        ({"loss": "softmax", "negatives": {"strategy": "none"}}, "negatives"),
        ({"negatives": {"strategy": "hard", "per_positive": 8, "hard_candidates": 4}}, "hard_candidates"),
    ],
)
def test_impossible_combinations_are_422_with_the_reason(client, dataset: str, sgd: dict, reason: str):
    r = client.post("/v1/jobs", json={"dataset_id": dataset, "algorithm": "sgd", "sgd": sgd})
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"], r.json()
    assert client.get("/v1/jobs").json()["items"] == []
