"""No silent acceptance: what a new user gets wrong is refused or reported, never quietly ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import planted_csv, upload


@pytest.fixture
def dataset(client, tmp_path: Path) -> str:
    return upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]


@pytest.mark.parametrize(
    ("algorithm", "block", "values"),
    [("sgd", "wals", {"l2": 3}), ("wals", "sgd", {"epochs": 2}), (None, "sgd", {"loss": "bpr"})],
)
def test_the_other_algorithms_block_is_a_422_naming_it(client, dataset: str, algorithm, block, values):
    body = {"dataset_id": dataset, block: values} | ({"algorithm": algorithm} if algorithm else {})
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert [e["field"] for e in problem["errors"]] == [block]
    assert f"algorithm is {block!r}" in problem["detail"], problem


def test_an_empty_or_default_other_block_says_nothing_and_passes(client, dataset: str):
    # A stored spec repeats every block with its defaults; sending one back must still work.
    client.app.state.enqueue = lambda job_id: None
    r = client.post("/v1/jobs", json={"dataset_id": dataset, "algorithm": "sgd", "wals": {}})
    assert r.status_code == 202, r.text
    again = client.post("/v1/jobs", json=r.json()["spec"])
    assert again.status_code == 202, again.text


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["qty", "Quantity", "clicks", "value", "plays", "count"])
def test_common_weight_names_are_recognised(client, tmp_path: Path, name: str):
    r = upload(client, _csv(tmp_path, "w.csv", f"user,item,{name}\nu1,i1,3\nu2,i2,1\nu1,i2,2\n"))
    assert r.status_code == 201, r.text
    stats = r.json()["stats"]
    assert stats["columns"]["weight"] == name and stats["weight"]["max"] == 3.0
    assert stats["ignored_columns"] == []


def test_the_response_says_which_columns_were_ignored(client, tmp_path: Path):
    r = upload(client, _csv(tmp_path, "c.csv", "user,item,amount,colour\nu1,i1,3,red\nu2,i2,1,blue\nu1,i2,2,red\n"))
    assert r.status_code == 201, r.text
    stats = r.json()["stats"]
    assert stats["columns"] == {"user": "user", "item": "item", "weight": None, "timestamp": None}
    assert stats["ignored_columns"] == ["amount", "colour"]
    # No weight was found although columns were left over: say so, and how to pick one.
    assert any("every interaction weighs 1" in note and "weight_column" in note for note in stats["notes"])
    chosen = upload(client, _csv(tmp_path, "c.csv", (tmp_path / "c.csv").read_text()), weight_column="amount")
    assert chosen.json()["stats"]["ignored_columns"] == ["colour"] and chosen.json()["stats"]["notes"] == []


# Fails until the query-parser rewrite (app/api/hot_path.py, params.py, routes/queries.py, another engineer's)
# refuses unknown parameters; not marked xfail, since .ci/run counts an xfail as a skipped test.
def test_an_unknown_query_parameter_is_a_422_naming_it(client, dataset: str):
    job = client.post("/v1/jobs", json={"dataset_id": dataset, "dim": 4, "wals": {"iterations": 2}}).json()
    model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
    assert client.get(f"/v1/models/{model}/users/u1/recommendations", params={"k": 3}).status_code == 200
    for path in (f"/v1/models/{model}/users/u1/recommendations", f"/v1/models/{model}/items/i1/similar"):
        r = client.get(path, params={"kk": 3})
        assert r.status_code == 422 and "kk" in r.json()["detail"], (path, r.text)
