"""A default job chooses its settings on the data: through the API, the search is reported in the job's
history and the model's metrics, named settings are kept, a bad budget is a 422, and a model that ranks
no better than popularity says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.recsys import wals_defaults as defaults
from tests.helpers import upload


def _planted(tmp_path: Path) -> Path:
    """The data of `unfold datasets synth --noise 0.05` (its defaults), as the README's walkthrough makes it."""
    from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv

    path = tmp_path / "planted.csv"
    write_planted_csv(planted_communities(PlantedConfig(noise=0.05)), path)
    return path


def _job(client, body: dict) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def test_the_default_job_searches_and_beats_popularity_on_planted_data(client, tmp_path: Path) -> None:
    ds = upload(client, _planted(tmp_path)).json()["id"]
    job = _job(client, {"dataset_id": ds})
    model = client.get(f"/v1/models/{job['model_id']}").json()
    metrics, search = model["metrics"], model["metrics"]["search"]
    assert metrics["recall@20"] > 1.2 * metrics["baseline"]["popularity"]["recall@20"]
    assert "warnings" not in metrics
    # The history shows every candidate with its validation scores, then the fit and the refit.
    tried = [h for h in job["history"] if h["phase"] == "search"]
    assert len(tried) == len(search["trials"]) >= 2
    assert all(h["params"] and h["scores"] for h in tried)
    assert [h["phase"] for h in job["history"]][-1] == "refit"
    # The resolved spec holds the chosen values, so the model can be trained again with search off.
    wals = model["spec"]["wals"]
    assert wals["iterations"] == search["chosen"]["steps"]
    assert None not in (wals["l2"], wals["unobserved_weight"], wals["l2_scaling"], wals["confidence"]["alpha"])
    assert search["cost_in_fixed_fits"]["spent"] <= search["cost_in_fixed_fits"]["budget"] == 3.0
    # One bar for the whole job, ending at 1.
    assert job["progress"]["fraction"] == 1.0 and job["progress"]["eta_seconds"] == 0.0


def test_search_off_trains_the_fixed_defaults(client, tmp_path: Path) -> None:
    ds = upload(client, _planted(tmp_path)).json()["id"]
    job = _job(client, {"dataset_id": ds, "search": {"mode": "off"}})
    assert not [h for h in job["history"] if h["phase"] == "search"]
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert "search" not in model["metrics"]
    wals, scaling = model["spec"]["wals"], defaults.L2_SCALING
    assert (wals["iterations"], wals["l2_scaling"]) == (defaults.ITERATIONS, scaling)
    assert wals["unobserved_weight"] == defaults.UNOBSERVED_WEIGHT[scaling] and wals["l2"] <= defaults.L2[scaling]
    assert wals["confidence"] == {"scheme": defaults.CONFIDENCE, "alpha": defaults.ALPHA, "eps": defaults.EPS}


def test_named_settings_are_kept(client, tmp_path: Path) -> None:
    ds = upload(client, _planted(tmp_path)).json()["id"]
    named = {"unobserved_weight": 0.5, "confidence": {"scheme": "linear", "alpha": 5.0}}
    job = _job(client, {"dataset_id": ds, "dim": 16, "wals": named})
    model = client.get(f"/v1/models/{job['model_id']}").json()
    wals = model["spec"]["wals"]
    assert wals["unobserved_weight"] == 0.5 and wals["confidence"]["scheme"] == "linear"
    assert wals["confidence"]["alpha"] == 5.0
    for trial in model["metrics"]["search"]["trials"]:
        assert not {"unobserved_weight", "alpha", "scheme"} & set(trial["params"])


@pytest.mark.parametrize("budget", [0, 1.0, 25, "lots", None])
def test_a_bad_budget_is_a_422_naming_it(client, tmp_path: Path, budget) -> None:
    ds = upload(client, _planted(tmp_path)).json()["id"]
    body = {"dataset_id": ds, "search": {"budget": budget}}
    if budget is None:
        body["search"] = {"budget": 3, "mode": "sometimes"}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert "search" in r.text and ("budget" in r.text or "mode" in r.text)


def test_a_model_no_better_than_popularity_says_so_loudly(client, tmp_path: Path) -> None:
    # Every user picks items by global popularity alone: there is nothing personal to learn.
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 301) ** 1.2
    lines = ["user,item"]
    for u in range(400):
        for i in rng.choice(300, size=15, p=weights / weights.sum()):
            lines.append(f"u{u},i{i}")
    path = tmp_path / "popular.csv"
    path.write_text("\n".join(lines) + "\n")
    ds = upload(client, path).json()["id"]
    job = _job(client, {"dataset_id": ds, "dim": 16})
    assert any("popularity baseline" in w for w in job["progress"]["warnings"])
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert any("popularity baseline" in w for w in model["metrics"]["warnings"])
