"""Item attributes, query-time filters, named filters, cold start and diversity, over HTTP (docs/catalogue.md).

One module-scoped API with a planted dataset (60 users, 40 items i0..i39) and two models trained on it:
an exact index and an HNSW graph forced onto the small catalogue. Attributes are a function of the item
number, so every expected answer is computed here from the same rule.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import planted_csv, upload

N_USERS, N_ITEMS = 60, 40


def attrs(i: int) -> dict[str, Any]:
    """The attributes of item i (what the upload says)."""
    return {
        "category": f"c{i % 4}",
        "price": i * 2.5,
        "tags": [t for t, on in (("even", i % 2 == 0), (f"g{i // 20}", True), ("hot", i % 5 == 0)) if on],
        "in_stock": i % 3 != 0,
    }


def attribute_csv(path: Path) -> Path:
    lines = ["item_id,category,price,tags,in_stock"]
    for i in range(N_ITEMS):
        a = attrs(i)
        lines.append(f"i{i},{a['category']},{a['price']},{'|'.join(a['tags'])},{str(a['in_stock']).lower()}")
    lines.append("ghost1,c9,1,,true")  # not an item of the dataset: stored and reported
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from app.api.app import create_app
    from app.config import Settings
    from app.migrate import upgrade

    tmp = tmp_path_factory.mktemp("filters")
    settings = Settings(var_dir=tmp / "var", task_always_eager=True, max_upload_mb=5)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        data = planted_csv(tmp / "p.csv", N_USERS, N_ITEMS)
        ds = upload(client, data).json()["id"]
        models = {}
        for kind, exact_max in (("exact", 50_000), ("hnsw", 0)):
            spec = {
                "dataset_id": ds,
                "dim": 8,
                "wals": {"iterations": 6},
                "evaluation": {"split": "none"},
                "index": {"exact_max_items": exact_max},
            }
            job = client.post("/v1/jobs", json=spec).json()
            job = client.get(f"/v1/jobs/{job['id']}").json()
            assert job["status"] == "succeeded", job
            models[kind] = job["model_id"]
        with attribute_csv(tmp / "items.csv").open("rb") as fh:
            r = client.post(
                f"/v1/datasets/{ds}/items", files={"file": ("items.csv", fh)}, data={"multi_valued": "tags"}
            )
        assert r.status_code == 200, r.text
        seen: dict[str, set[str]] = {}
        for line in data.read_text().splitlines()[1:]:
            u, i, _ = line.split(",")
            seen.setdefault(u, set()).add(i)
        yield {"client": client, "dataset": ds, "models": models, "upload": r.json(), "seen": seen, "tmp": tmp}


@pytest.fixture(params=["exact", "hnsw"])
def model(env, request) -> str:
    return str(env["models"][request.param])


def test_the_upload_infers_kinds_and_reports_unknown_ids(env):
    body = env["upload"]
    kinds = {a["name"]: a["kind"] for a in body["attributes"]}
    assert kinds == {"category": "categorical", "price": "numeric", "tags": "tags", "in_stock": "boolean"}
    assert body["upload"]["n_unknown"] == 1 and body["upload"]["unknown_ids"] == ["ghost1"]
    assert body["n_rows"] == N_ITEMS + 1 and body["n_unknown"] == 1 and body["version"] >= 1
    client, ds = env["client"], env["dataset"]
    assert client.get(f"/v1/datasets/{ds}/items").json()["version"] == body["version"]
    one = client.get(f"/v1/datasets/{ds}/items/i10").json()
    assert one["attributes"] == attrs(10)


def test_upserts_write_only_the_uploaded_columns_and_replace_starts_over(env):
    client = env["client"]
    ds = upload(client, planted_csv(env["tmp"] / "q.csv", N_USERS, N_ITEMS)).json()["id"]

    def post(name: str, text: str, **form: str) -> Any:
        return client.post(f"/v1/datasets/{ds}/items", files={"file": (name, text.encode())}, data=form)

    first = post("a.csv", "item,colour,size\ni1,red,3\ni2,blue,4\n")
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    lines = [json.dumps({"item": "i2", "size": None, "tags": ["x", "y"]}), json.dumps({"item": "i3", "size": 7})]
    second = post("b.ndjson", "\n".join(lines) + "\n")
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2 and second.json()["upload"] | {"unknown_ids": []} == {
        "rows": 2,
        "new": 1,
        "updated": 1,
        "columns": ["size", "tags"],
        "n_unknown": 0,
        "unknown_ids": [],
    }
    got = {i: client.get(f"/v1/datasets/{ds}/items/{i}").json()["attributes"] for i in ("i1", "i2", "i3")}
    assert got == {
        "i1": {"colour": "red", "size": 3.0},
        "i2": {"colour": "blue", "tags": ["x", "y"]},
        "i3": {"size": 7.0},
    }
    # A column keeps its kind: text where numbers were is refused, naming the line and column.
    bad = post("c.csv", "item,size\ni1,big\n")
    assert bad.status_code == 422 and bad.json()["line"] == 2 and bad.json()["column"] == "size"
    replaced = post("d.tsv", "item\tcolour\ni4\tgreen\n", mode="replace")
    assert replaced.status_code == 200 and [a["name"] for a in replaced.json()["attributes"]] == ["colour"]
    assert client.get(f"/v1/datasets/{ds}/items/i1").status_code == 404
    assert post("e.csv", "sku,colour\nnope,red\n").status_code == 422  # no id is an item: wrong id column
    words = post("f.csv", "item,note\ni4,Infinity\ni5,nan\n").json()["attributes"]
    assert {"name": "note", "kind": "categorical"} in words  # words that float() reads are not numbers
    assert client.delete(f"/v1/datasets/{ds}/items").status_code == 204
    assert client.get(f"/v1/datasets/{ds}/items").status_code == 404


def test_another_tenant_can_neither_read_nor_write_the_attributes(env):
    from app.errors import NotFound
    from app.ingestion.attributes import AttributeOptions
    from app.services import catalogue

    client, ds = env["client"], env["dataset"]
    state = client.app.state
    with _session(client) as session:
        assert catalogue.get_catalogue(session, ds, tenant="default").dataset_id == ds
        with pytest.raises(NotFound):
            catalogue.get_catalogue(session, ds, tenant="other")
        with pytest.raises(NotFound):
            catalogue.upload_attributes(
                session,
                state.store,
                ds,
                io.BytesIO(b"item,x\ni1,1\n"),
                filename="a.csv",
                options=AttributeOptions(),
                mode="upsert",
                tenant="other",
                limits=state.settings.limits,
            )


def _session(client: TestClient) -> Any:
    from app.db import get_sessionmaker

    return get_sessionmaker(client.app.state.settings.resolved_database_url)()


FILTERS: list[tuple[str, Callable[[int], bool]]] = [
    ('category in ("c1", "c2") and price < 80', lambda i: attrs(i)["category"] in ("c1", "c2") and i * 2.5 < 80),
    ('category = "c3"', lambda i: i % 4 == 3),
    ('in_stock and tags has "hot"', lambda i: i % 3 != 0 and i % 5 == 0),
    ('not tags has any ("even", "g1") or price >= 95', lambda i: i % 2 == 1 and i < 20 or i * 2.5 >= 95),
    ('id in ("i7", "i8") or (tags has all ("g1", "hot") and not in_stock)', lambda i: i in (7, 8, 30)),
]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [x["item"] for x in items]


@pytest.mark.parametrize(("expression", "keep"), FILTERS)
def test_every_query_endpoint_returns_exactly_k_allowed_items_best_first(env, model, expression, keep):
    client = env["client"]
    allowed = {f"i{i}" for i in range(N_ITEMS) if keep(i)}
    k = min(5, len(allowed))
    base = f"/v1/models/{model}"

    def check(filtered: list[dict[str, Any]], everything: list[dict[str, Any]], n: int) -> None:
        # The filtered answer is the unfiltered ranking with the disallowed items taken out, cut at n.
        assert _ids(filtered) == [i for i in _ids(everything) if i in allowed][:n]
        assert len(filtered) == n

    user = "u3"
    unseen = allowed - env["seen"][user]
    params = {"k": k, "filter": expression}
    got = client.get(f"{base}/users/{user}/recommendations", params=params)
    assert got.status_code == 200, got.text
    assert got.json()["source"] == "model"
    every = client.get(f"{base}/users/{user}/recommendations", params={"k": N_ITEMS}).json()["items"]
    check(got.json()["items"], every, min(k, len(unseen)))

    got = client.get(f"{base}/items/i0/similar", params=params).json()["items"]
    every = client.get(f"{base}/items/i0/similar", params={"k": N_ITEMS}).json()["items"]
    check(got, every, min(k, len(allowed - {"i0"})))

    fold = {"items": ["i21", "i22", "i25"], "k": k, "exclude_seen": False}
    got = client.post(f"{base}/recommendations", json={**fold, "filter": expression}).json()
    every = client.post(f"{base}/recommendations", json={**fold, "k": N_ITEMS}).json()["items"]
    assert got["source"] == "fold_in"
    check(got["items"], every, k)

    vector = [0.3, -0.1, 0.2, 0.05, -0.2, 0.1, 0.0, 0.4]
    got = client.post(f"{base}/neighbors", json={"vector": vector, "k": k, "filter": expression}).json()["items"]
    every = client.post(f"{base}/neighbors", json={"vector": vector, "k": N_ITEMS}).json()["items"]
    check(got, every, k)

    users = ["u1", "u40", "ghost"]
    batch = {"users": users, "k": k, "exclude_seen": False, "filter": expression}
    got = client.post(f"{base}/recommendations/batch", json=batch).json()
    every = client.post(f"{base}/recommendations/batch", json={**batch, "filter": None, "k": N_ITEMS}).json()
    assert got["unknown_users"] == ["ghost"] and got["popular_users"] == []
    for u in ("u1", "u40"):
        check(got["results"][u], every["results"][u], k)
    stream = client.post(f"{base}/recommendations/batch", json=batch, headers={"accept": "application/x-ndjson"})
    lines = [json.loads(line) for line in stream.text.splitlines()]
    assert {line["user"]: line["items"] for line in lines[1:]} == {u: got["results"][u] for u in ("u1", "u40")}


def test_a_very_selective_filter_is_exact(env, model):
    # Two allowed items out of 40 (5 %): the answer is both, in the order of their true scores.
    client = env["client"]
    base = f"/v1/models/{model}"
    got = client.get(f"{base}/users/u45/recommendations", params={"k": 10, "filter": 'id in ("i1", "i33")'}).json()
    every = client.get(f"{base}/users/u45/recommendations", params={"k": N_ITEMS, "exclude_seen": "false"}).json()
    expected = [i for i in _ids(every["items"]) if i in {"i1", "i33"} - env["seen"]["u45"]]
    assert _ids(got["items"]) == expected


@pytest.mark.parametrize(
    ("expression", "position", "words"),
    [
        ('colour = "red"', 0, "unknown attribute 'colour'"),
        ('category = "c1" and sise > 3', 20, "unknown attribute 'sise'"),
        ('category = "c1" and', 19, "expected an attribute name"),
        ('price < "cheap"', 8, "compare it with a number"),
        ('category = "c1" )', 16, "expected and, or"),
        ("tags = 'x'", 0, "has"),
        ("@nothing-stored", 0, "no named filter @nothing-stored"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_position(env, expression, position, words):
    model = env["models"]["exact"]
    r = env["client"].get(f"/v1/models/{model}/users/u1/recommendations", params={"filter": expression})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["field"] == "filter" and body["position"] == position, body
    assert words in body["detail"] and f"column {position + 1}" in body["detail"]
    assert body["errors"][0]["field"] == "filter"


def test_a_cold_user_gets_popular_items_within_the_filter_and_none_keeps_the_404(env, model):
    client = env["client"]
    base = f"/v1/models/{model}/users/nobody/recommendations"
    counts: dict[str, int] = {}
    for items in env["seen"].values():
        for i in items:
            counts[i] = counts.get(i, 0) + 1
    top = sorted(counts.values(), reverse=True)

    def is_most_popular(items: list[dict[str, Any]], among: set[str]) -> bool:
        # Scores are the counts, best first; ties may come in any order, so compare counts, not ids.
        best = sorted((counts[i] for i in among), reverse=True)[: len(items)]
        return all(x["score"] == counts[x["item"]] for x in items) and [x["score"] for x in items] == best

    got = client.get(base, params={"k": 4}).json()
    assert got["source"] == "popular" and len(got["items"]) == 4 and top[0] > top[10]
    assert is_most_popular(got["items"], set(counts))
    within = client.get(base, params={"k": 4, "filter": 'category = "c3"'}).json()
    c3 = {i for i in counts if int(i[1:]) % 4 == 3}
    assert within["source"] == "popular" and set(_ids(within["items"])) <= c3
    assert len(within["items"]) == 4 and is_most_popular(within["items"], c3)
    gone = client.get(base, params={"fallback": "none"})
    assert gone.status_code == 404 and "fold-in" in gone.json()["detail"]
    batch = {"users": ["u1", "nobody"], "k": 4, "fallback": "popular"}
    answer = client.post(f"/v1/models/{model}/recommendations/batch", json=batch).json()
    assert answer["popular_users"] == ["nobody"] and answer["results"]["nobody"] == got["items"]


def test_named_filters_are_stored_listed_used_and_deleted(env):
    client = env["client"]
    model = env["models"]["hnsw"]
    r = client.put("/v1/filters/cheap", json={"expression": "price < 30", "description": "under 30"})
    assert r.status_code == 200, r.text
    assert r.json()["expression"] == "price < 30"
    assert client.put("/v1/filters/cheap-c1", json={"expression": '@cheap and category = "c1"'}).status_code == 200
    names = [f["name"] for f in client.get("/v1/filters").json()["items"]]
    assert {"cheap", "cheap-c1"} <= set(names)
    got = client.get(f"/v1/models/{model}/items/i0/similar", params={"k": 10, "filter": "@cheap-c1"}).json()
    assert set(_ids(got["items"])) == {f"i{i}" for i in range(N_ITEMS) if i % 4 == 1 and i * 2.5 < 30}
    # A stored filter changes what queries that name it get, at once in this process.
    client.put("/v1/filters/cheap", json={"expression": "price < 10"})
    got = client.get(f"/v1/models/{model}/items/i0/similar", params={"k": 10, "filter": "@cheap-c1"}).json()
    assert set(_ids(got["items"])) == {"i1"}
    cycle = client.put("/v1/filters/cheap", json={"expression": "@cheap-c1"})
    assert cycle.status_code == 422 and "cycle" in cycle.json()["detail"]
    syntax = client.put("/v1/filters/broken", json={"expression": "price <"})
    assert syntax.status_code == 422 and syntax.json()["field"] == "expression" and syntax.json()["position"] == 7
    assert client.delete("/v1/filters/cheap-c1").status_code == 204
    assert client.get("/v1/filters/cheap-c1").status_code == 404


def test_diversify_caps_each_category_or_spreads_by_mmr(env, model):
    client = env["client"]
    base = f"/v1/models/{model}/users/u2/recommendations"
    capped = client.get(base, params={"k": 4, "diversify": "category:1"}).json()["items"]
    assert len(capped) == 4 and len({attrs(int(i[1:]))["category"] for i in _ids(capped)}) == 4
    plain = client.get(base, params={"k": 4}).json()["items"]
    assert len({attrs(int(i[1:]))["category"] for i in _ids(plain)}) < 4  # the cap did something
    spread = client.get(base, params={"k": 4, "diversify": "mmr:0.2"}).json()["items"]
    assert len(spread) == 4 and _ids(spread) != _ids(plain)
    assert client.get(base, params={"k": 4, "diversify": "mmr:1"}).json()["items"] == plain
    for bad in ("price:2", "category:0", "mmr:3"):
        r = client.get(base, params={"diversify": bad})
        assert r.status_code == 422 and r.json()["field"] == "diversify"


def test_the_dashboard_lists_the_named_filters(env):
    client = env["client"]
    html = client.get("/").text
    assert 'id="filters"' in html and 'id="filters-empty"' in html
    script = next(a for a in re.findall(r'src="(/dashboard/static/[^"]+)"', html) if "dashboard.js" in a)
    assert 'getJSON("/v1/filters")' in client.get(script).text


def test_deleting_a_dataset_deletes_its_attributes(env):
    client = env["client"]
    ds = upload(client, planted_csv(env["tmp"] / "r.csv", N_USERS, N_ITEMS)).json()["id"]
    r = client.post(f"/v1/datasets/{ds}/items", files={"file": ("a.csv", b"item,colour\ni1,red\n")})
    assert r.status_code == 200
    folder = client.app.state.store.local_dir(f"catalogues/{ds}/v1")
    assert folder.is_dir()
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    assert not folder.exists() and client.get(f"/v1/datasets/{ds}/items").status_code == 404


def test_a_live_answer_keeps_to_the_filter(env):
    # Through an alias, a user with events is answered from their live vector (docs/events.md): filtered too.
    client, ds = env["client"], env["dataset"]
    assert client.put("/v1/aliases/live", json={"model_id": env["models"]["exact"]}).status_code == 200
    events = [{"user": "u1", "item": f"i{i}", "weight": 3} for i in range(20, 25)]
    assert client.post(f"/v1/datasets/{ds}/events", json={"events": events}).status_code == 200
    params = {"k": 5, "filter": 'category = "c3"', "diversify": "mmr"}
    deadline = time.monotonic() + 5
    while (r := client.get("/v1/models/live/users/u1/recommendations", params=params)).json()["source"] != "fold_in":
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    items = _ids(r.json()["items"])
    assert len(items) == 5 and all(int(i[1:]) % 4 == 3 for i in items)
    assert not set(items) & {e["item"] for e in events}


def test_a_parquet_upload_reads_lists_as_tags_and_numbers_as_numeric(env):
    import pyarrow as pa
    import pyarrow.parquet as pq

    client = env["client"]
    ds = upload(client, planted_csv(env["tmp"] / "s.csv", N_USERS, N_ITEMS)).json()["id"]
    table = pa.table(
        {"item_id": ["i1", "i2"], "genres": [["a", "b"], None], "year": [1999, 2004], "new": [False, True]}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    r = client.post(f"/v1/datasets/{ds}/items", files={"file": ("items.parquet", sink.getvalue())})
    assert r.status_code == 200, r.text
    kinds = {a["name"]: a["kind"] for a in r.json()["attributes"]}
    assert kinds == {"genres": "tags", "year": "numeric", "new": "boolean"}
    one = client.get(f"/v1/datasets/{ds}/items/i1").json()["attributes"]
    assert one == {"genres": ["a", "b"], "year": 1999.0, "new": False}


def test_queries_follow_the_attributes_through_a_delete_and_a_new_upload(env):
    client = env["client"]
    ds = upload(client, planted_csv(env["tmp"] / "t.csv", N_USERS, N_ITEMS)).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}}).json()
    model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]

    def red(text: bytes) -> Any:
        assert client.post(f"/v1/datasets/{ds}/items", files={"file": ("a.csv", text)}).status_code == 200
        params = {"k": 10, "filter": 'colour = "red"'}
        return client.get(f"/v1/models/{model}/items/i0/similar", params=params)

    assert set(_ids(red(b"item,colour\ni1,red\ni2,red\ni3,blue\n").json()["items"])) == {"i1", "i2"}
    assert client.delete(f"/v1/datasets/{ds}/items").status_code == 204
    gone = client.get(f"/v1/models/{model}/items/i0/similar", params={"filter": 'colour = "red"'})
    assert gone.status_code == 422 and "unknown attribute 'colour'" in gone.json()["detail"]
    # Version 1 again, other items: the answer follows the new file, not what was remembered of the old one.
    assert set(_ids(red(b"item,colour\ni5,red\ni6,blue\n").json()["items"])) == {"i5"}


def test_cold_items_join_answers_when_asked_placed_by_their_attributes(env):
    client = env["client"]
    ds = upload(client, planted_csv(env["tmp"] / "u.csv", N_USERS, N_ITEMS)).json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}}).json()
    model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
    rows = "".join(f"i{i},c{i % 4}\n" for i in range(N_ITEMS)) + "new1,c3\nghost,c9\n"
    r = client.post(f"/v1/datasets/{ds}/items", files={"file": ("a.csv", ("item,category\n" + rows).encode())})
    assert r.status_code == 200 and r.json()["upload"]["unknown_ids"] == ["new1", "ghost"]

    vector = [0.4, -0.3, 0.2, 0.1]
    body = {"vector": vector, "k": 11, "filter": 'category = "c3"'}
    plain = client.post(f"/v1/models/{model}/neighbors", json=body).json()["items"]
    assert "new1" not in _ids(plain) and len(plain) == 10  # off by default
    got = client.post(f"/v1/models/{model}/neighbors", json={**body, "cold_items": True}).json()["items"]
    assert len(got) == 11 and "new1" in _ids(got) and "ghost" not in _ids(got)
    # new1 sits at the mean of the ten c3 items' vectors, so its dot product is the mean of theirs.
    score = {x["item"]: x["score"] for x in got}
    assert score["new1"] == pytest.approx(sum(x["score"] for x in plain) / 10, abs=1e-4)
    assert [x["score"] for x in got] == sorted(score.values(), reverse=True)

    other = client.post(f"/v1/models/{model}/neighbors", json={**body, "filter": 'category = "c1"', "cold_items": True})
    assert "new1" not in _ids(other.json()["items"])  # the filter applies to cold items too
    params = {"k": N_ITEMS, "cold_items": "true", "exclude_seen": "false"}
    user = client.get(f"/v1/models/{model}/users/u1/recommendations", params=params).json()["items"]
    assert "new1" in _ids(user) and len(user) == N_ITEMS
    excluded = client.get(f"/v1/models/{model}/users/u1/recommendations", params={**params, "exclude": "new1"})
    assert "new1" not in _ids(excluded.json()["items"])
    fold = {"items": ["i3", "i7", "i11"], "k": 11, "filter": 'category = "c3"', "cold_items": True}
    folded = client.post(f"/v1/models/{model}/recommendations", json=fold).json()["items"]
    assert "new1" in _ids(folded) and len(folded) == 8  # the other 7 c3 items and new1
    mixed = {"k": 5, "cold_items": "true", "diversify": "mmr"}
    similar = client.get(f"/v1/models/{model}/items/i3/similar", params=mixed)
    assert similar.status_code == 200 and len(similar.json()["items"]) == 5


def test_items_added_by_a_later_dataset_version_are_not_reported_unknown(env):
    client = env["client"]
    ds = upload(client, planted_csv(env["tmp"] / "v.csv", N_USERS, N_ITEMS)).json()["id"]
    assert client.post(f"/v1/datasets/{ds}/events", json={"events": [{"user": "u1", "item": "brand-new"}]}).is_success
    assert client.post(f"/v1/datasets/{ds}/versions").status_code == 201
    r = client.post(f"/v1/datasets/{ds}/items", files={"file": ("a.csv", b"item,colour\nbrand-new,red\nghost,blue\n")})
    assert r.status_code == 200, r.text
    assert r.json()["upload"]["unknown_ids"] == ["ghost"] and r.json()["n_unknown"] == 1
