"""The spec's distributed block: N = 1 is the usual job; N > 1 only for WALS with fixed settings, N at most 64."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import planted_csv, upload


def test_distributed_workers_are_checked_at_the_edge(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
    fixed = {"dataset_id": ds, "search": {"mode": "off"}}
    cases = [
        ({**fixed, "distributed": {"workers": 0}}, "greater than or equal to 1"),
        ({**fixed, "distributed": {"workers": 65}}, "less than or equal to 64"),
        ({**fixed, "algorithm": "sgd", "distributed": {"workers": 2}}, "needs algorithm 'wals'"),
        ({"dataset_id": ds, "distributed": {"workers": 2}}, "needs search.mode 'off'"),
        ({**fixed, "distributed": {"workers": 2, "hosts": 2}}, "hosts"),
    ]
    for body, message in cases:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422 and message in r.text, (body, r.text)


def test_one_worker_is_the_usual_job(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
    body = {"dataset_id": ds, "dim": 8, "wals": {"iterations": 3}, "search": {"mode": "off"}}
    job = client.post("/v1/jobs", json={**body, "distributed": {"workers": 1}}).json()
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["spec"]["distributed"] == {"workers": 1}
