"""Queries against a model trained on two planted communities."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.recsys import wals_defaults
from tests.helpers import planted_csv, upload

N_USERS, N_ITEMS = 60, 40


def _group_user(u: str) -> int:
    return int(u[1:]) // (N_USERS // 2)


def _group_item(i: str) -> int:
    return int(i[1:]) // (N_ITEMS // 2)


# Every query test runs against both index kinds: exact search, and an HNSW graph forced onto
# this small catalog by exact_max_items=0 (the worker picks HNSW above that size).
@pytest.fixture(params=["exact", "hnsw"])
def model(client, tmp_path: Path, request) -> str:
    path = planted_csv(tmp_path / "p.csv", N_USERS, N_ITEMS)
    ds = upload(client, path).json()["id"]
    spec = {
        "dataset_id": ds,
        "dim": 8,
        "wals": {"iterations": 8},
        "evaluation": {"split": "none"},
        "index": {"exact_max_items": 0 if request.param == "hnsw" else 50_000},
    }
    job = client.post("/v1/jobs", json=spec).json()
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    return job["model_id"]


def test_model_describes_its_index(client, model):
    index = client.get(f"/v1/models/{model}").json()["index"]
    assert index["kind"] in ("exact", "hnsw") and index["metric"] == "dot"
    assert index["n_items"] == N_ITEMS and index["dim"] == 8
    # Measured at build time against exact search with the model's users as queries.
    assert index["recall@10"] >= 0.95
    if index["kind"] == "hnsw":
        assert index["recall_queries"] == N_USERS and index["recall_query_source"] == "sample"


def _seen(tmp_path: Path) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for line in (tmp_path / "p.csv").read_text().splitlines()[1:]:
        u, i, _ = line.split(",")
        seen.setdefault(u, set()).add(i)
    return seen


def test_user_recommendations_exclude_seen_and_stay_in_the_community(client, model, tmp_path: Path):
    seen = _seen(tmp_path)
    for user in ("u0", "u45"):
        r = client.get(f"/v1/models/{model}/users/{user}/recommendations", params={"k": 5})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 5
        assert not {x["item"] for x in items} & seen[user]
        scores = [x["score"] for x in items]
        assert scores == sorted(scores, reverse=True)
        assert all(_group_item(x["item"]) == _group_user(user) for x in items)


def test_exact_k_when_the_catalog_allows(client, model, tmp_path: Path):
    # 40 items, 12 seen: asking for 1000 gives exactly the 28 unseen ones.
    items = client.get(f"/v1/models/{model}/users/u3/recommendations", params={"k": 1000}).json()["items"]
    assert len(items) == N_ITEMS - 12
    everything = client.get(
        f"/v1/models/{model}/users/u3/recommendations", params={"k": 1000, "exclude_seen": "false"}
    ).json()["items"]
    assert len(everything) == N_ITEMS


def test_bad_queries(client, model):
    base = f"/v1/models/{model}"
    assert client.get(f"{base}/users/nobody/recommendations", params={"fallback": "none"}).status_code == 404
    for k in (0, 1001, "x"):
        r = client.get(f"{base}/users/u0/recommendations", params={"k": k})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "k"
    assert client.get("/v1/models/mdl_missing/users/u0/recommendations").status_code == 404
    assert client.get(f"{base}/items/nothing/similar").status_code == 404
    r = client.post(f"{base}/neighbors", json={"vector": [0.1] * 3, "k": 5})
    assert r.status_code == 422 and "dimension" in r.json()["detail"]


def test_batch_matches_single_queries_and_reports_unknown_users(client, model):
    users = ["u1", "u2", "u40", "ghost"]
    r = client.post(f"/v1/models/{model}/recommendations/batch", json={"users": users, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown_users"] == ["ghost"]
    for user in users[:3]:
        single = client.get(f"/v1/models/{model}/users/{user}/recommendations", params={"k": 7}).json()
        assert [x["item"] for x in body["results"][user]] == [x["item"] for x in single["items"]]


def test_similar_items_exclude_the_item_and_share_its_community(client, model):
    items = client.get(f"/v1/models/{model}/items/i3/similar", params={"k": 5}).json()["items"]
    assert len(items) == 5 and "i3" not in {x["item"] for x in items}
    assert all(_group_item(x["item"]) == 0 for x in items)


def test_fold_in_a_new_user(client, model):
    r = client.post(
        f"/v1/models/{model}/recommendations",
        json={"items": ["i21", "i22", "i25", "unknown-item"], "weights": [1, 2, 1, 1], "k": 5},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown_items"] == ["unknown-item"]
    got = [x["item"] for x in body["items"]]
    assert len(got) == 5 and not {"i21", "i22", "i25"} & set(got)
    assert all(_group_item(i) == 1 for i in got)
    bad = client.post(f"/v1/models/{model}/recommendations", json={"items": ["i1"], "weights": [1, 2]})
    assert bad.status_code == 422 and "weights" in bad.json()["detail"]


def test_neighbors_rank_by_inner_product(client, model):
    dim = client.get(f"/v1/models/{model}").json()["dim"]
    items = client.post(f"/v1/models/{model}/neighbors", json={"vector": [1.0] * dim, "k": 4}).json()["items"]
    scores = [x["score"] for x in items]
    assert len(items) == 4 and scores == sorted(scores, reverse=True)


def test_aliases_work_wherever_a_model_id_does(client, model):
    r = client.put("/v1/aliases/prod", json={"model_id": model})
    assert r.status_code == 200 and r.json()["model_id"] == model
    assert client.get("/v1/models/prod").json()["id"] == model
    via_alias = client.get("/v1/models/prod/users/u0/recommendations").json()
    assert via_alias["model_id"] == model and len(via_alias["items"]) == 10
    assert client.put("/v1/aliases/x", json={"model_id": "mdl_nope"}).status_code == 404
    assert model in client.app.state.model_cache.loaded_ids()
    assert client.delete(f"/v1/models/{model}").status_code == 204
    assert model not in client.app.state.model_cache.loaded_ids()  # deleting evicts it
    assert client.get("/v1/models/prod").status_code == 404
    assert client.get(f"/v1/models/{model}/users/u0/recommendations").status_code == 404


def test_moving_an_alias_takes_effect_at_once(client, model, tmp_path: Path):
    other = client.post(
        "/v1/jobs",
        json={
            "dataset_id": client.get("/v1/datasets").json()["items"][0]["id"],
            "dim": 4,
            "wals": {"iterations": 2},
            "evaluation": {"split": "none"},
        },
    ).json()
    other_model = client.get(f"/v1/jobs/{other['id']}").json()["model_id"]
    client.put("/v1/aliases/live", json={"model_id": model})
    assert client.get("/v1/models/live/users/u0/recommendations").json()["model_id"] == model
    client.put("/v1/aliases/live", json={"model_id": other_model})
    assert client.get("/v1/models/live/users/u0/recommendations").json()["model_id"] == other_model
    client.delete("/v1/aliases/live")
    assert client.get("/v1/models/live/users/u0/recommendations").status_code == 404


def test_cosine_index_scores_are_cosines(client, tmp_path: Path):
    path = planted_csv(tmp_path / "p.csv", N_USERS, N_ITEMS)
    ds = upload(client, path).json()["id"]
    spec = {"dataset_id": ds, "dim": 8, "evaluation": {"split": "none"}, "index": {"metric": "cosine"}}
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
    model = job["model_id"]
    assert client.get(f"/v1/models/{model}").json()["index"]["metric"] == "cosine"
    items = client.get(f"/v1/models/{model}/users/u0/recommendations", params={"k": 5}).json()["items"]
    assert len(items) == 5 and all(-1.0 - 1e-5 <= x["score"] <= 1.0 + 1e-5 for x in items)
    # Cosine is scale-free: a raw vector and ten times it give the same neighbours and scores.
    r1 = client.post(f"/v1/models/{model}/neighbors", json={"vector": [0.1] * 8, "k": 5}).json()["items"]
    r10 = client.post(f"/v1/models/{model}/neighbors", json={"vector": [1.0] * 8, "k": 5}).json()["items"]
    assert [x["item"] for x in r1] == [x["item"] for x in r10]
    assert [x["score"] for x in r1] == pytest.approx([x["score"] for x in r10], abs=1e-5)


def test_frequency_scaled_wals_trains_and_folds_in(client, tmp_path: Path):
    path = planted_csv(tmp_path / "p.csv", N_USERS, N_ITEMS)
    ds = upload(client, path).json()["id"]
    spec = {"dataset_id": ds, "dim": 8, "evaluation": {"split": "none"}, "wals": {"l2_scaling": "frequency"}}
    spec["search"] = {"mode": "off"}  # the fixed defaults: what this test checks
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
    assert job["status"] == "succeeded", job
    wals = client.get(f"/v1/models/{job['model_id']}").json()["spec"]["wals"]
    # Omitted λ and w0 take the frequency-scaled defaults, and the resolved spec says so.
    scaled = (wals_defaults.L2["frequency"], wals_defaults.UNOBSERVED_WEIGHT["frequency"])
    assert wals["l2_scaling"] == "frequency" and (wals["l2"], wals["unobserved_weight"]) == scaled
    seen = _seen(tmp_path)["u0"]
    r = client.post(f"/v1/models/{job['model_id']}/recommendations", json={"items": sorted(seen), "k": 5})
    assert r.status_code == 200, r.text
    items = [x["item"] for x in r.json()["items"]]
    assert len(items) == 5 and not set(items) & seen
    assert all(_group_item(i) == _group_user("u0") for i in items)


def test_explicit_exclusions_join_the_seen_items_and_k_stays_exact(client, model, tmp_path: Path):
    base = f"/v1/models/{model}/users/u3/recommendations"
    first = [x["item"] for x in client.get(base, params={"k": 6}).json()["items"]]
    banned = first[:3] + ["not-an-item"]  # unknown ids are ignored
    r = client.get(base, params={"k": 6, "exclude": banned})
    assert r.status_code == 200, r.text
    items = [x["item"] for x in r.json()["items"]]
    assert len(items) == 6 and not set(items) & set(banned) and not set(items) & _seen(tmp_path)["u3"]
    assert items[:3] == first[3:]  # the rest of the ranking moves up
    # Without exclude_seen, the seen items come back but the explicit ones still do not.
    r = client.get(base, params={"k": 1000, "exclude_seen": "false", "exclude": banned[:3]})
    assert len(r.json()["items"]) == N_ITEMS - 3
    batch = client.post(
        f"/v1/models/{model}/recommendations/batch", json={"users": ["u3", "u40"], "k": 6, "exclude": banned}
    ).json()["results"]
    assert [x["item"] for x in batch["u3"]] == items
    assert not {x["item"] for x in batch["u40"]} & set(banned)
