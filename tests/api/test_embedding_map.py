"""GET /v1/models/{id}/embedding-map: the 2-D map stored with every model at training time."""

from __future__ import annotations

from pathlib import Path

from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv
from app.services.embedding_maps import EMBEDDING_MAP_FILE
from app.services.models import model_key
from tests.helpers import planted_csv, upload

SMALL = {"dim": 8, "wals": {"iterations": 4}}


def _train(client, path: Path) -> dict:
    ds = upload(client, path).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds, "algorithm": "wals", **SMALL}).json()
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def test_planted_groups_colour_the_map_with_their_labels(client, tmp_path: Path):
    data = planted_communities(PlantedConfig(n_groups=3, users_per_group=40, items_per_group=20, seed=1))
    write_planted_csv(data, tmp_path / "planted.csv")
    job = _train(client, tmp_path / "planted.csv")
    r = client.get(f"/v1/models/{job['model_id']}/embedding-map")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == job["model_id"] and body["method"] == "pca"
    assert body["colour_by"] == "group"
    assert body["n_items"] == body["n_points"] == 60
    assert {e["label"] for e in body["legend"]} == {"0", "1", "2"}
    assert sum(e["count"] for e in body["legend"]) == 60
    points = body["points"]
    assert len(points["item"]) == len(points["x"]) == len(points["y"]) == len(points["colour"]) == 60
    # Each point's colour is its item's planted group (write_planted_csv names item i "i<i>").
    labels = {e["code"]: e["label"] for e in body["legend"]}
    for item, colour in zip(points["item"], points["colour"], strict=True):
        assert labels[colour] == str(data.item_groups[int(item[1:])])
    ratio = body["explained_variance_ratio"]
    assert len(ratio) == 2 and 0 < ratio[1] <= ratio[0] <= 1
    assert 0.0 <= body["group_separation"] <= 1.0


def test_without_groups_the_map_is_coloured_by_popularity_and_an_alias_works(client, tmp_path: Path):
    job = _train(client, planted_csv(tmp_path / "p.csv"))
    client.put("/v1/aliases/current", json={"model_id": job["model_id"]})
    body = client.get("/v1/models/current/embedding-map").json()
    assert body["model_id"] == job["model_id"]
    assert body["colour_by"] == "popularity" and body["group_separation"] is None
    assert [e["label"] for e in body["legend"]] == ["top 1%", "top 1–10%", "top 10–50%", "bottom 50%"]
    assert [e["count"] for e in body["legend"]] == [0, 4, 16, 20]  # 40 items, ranked by interactions


def test_a_model_without_a_map_is_404_saying_so(client, settings, tmp_path: Path):
    job = _train(client, planted_csv(tmp_path / "p.csv"))
    # A model trained before maps were stored: its artifact has no map file.
    store = client.app.state.store
    model = client.get(f"/v1/models/{job['model_id']}").json()
    (store.local_dir(model_key(model["id"])) / EMBEDDING_MAP_FILE).unlink()
    r = client.get(f"/v1/models/{model['id']}/embedding-map")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "no embedding map" in r.json()["detail"]
    assert client.get("/v1/models/mdl_missing/embedding-map").status_code == 404


def test_the_map_of_another_tenants_model_is_404(client, settings, tmp_path: Path):
    from app.db import get_sessionmaker
    from app.services import api_keys

    with get_sessionmaker(settings.resolved_database_url)() as session:
        _, ours = api_keys.create_key(session, "acme")
        _, theirs = api_keys.create_key(session, "globex")
    client.headers["Authorization"] = f"Bearer {ours}"
    job = _train(client, planted_csv(tmp_path / "p.csv"))
    path = f"/v1/models/{job['model_id']}/embedding-map"
    assert client.get(path).status_code == 200
    assert client.get(path, headers={"Authorization": f"Bearer {theirs}"}).status_code == 404
    assert client.get(path, headers={"Authorization": ""}).status_code == 401
