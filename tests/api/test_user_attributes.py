"""User attributes (POST /v1/datasets/{id}/users) and the segment popularity fallback, over HTTP (docs/catalogue.md).

The interactions are built so that the segments' popular items differ from the global ones: ten "fr" users
touch i0 (all ten), i1 (eight) and i9 (five); twenty "de" users touch i5, i6, i7 and i9. Globally i9 (25),
then i5, i6, i7 (20 each) lead; among the fr users i0 (10), i1 (8), i9 (5) do.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import upload

FR, DE = [f"u{u}" for u in range(10)], [f"u{u}" for u in range(10, 30)]


def interactions(path: Path) -> Path:
    lines = ["user,item,weight"]
    for n, u in enumerate(FR):
        lines += [f"{u},i0,1"] + ([f"{u},i1,1"] if n < 8 else []) + ([f"{u},i9,1"] if n < 5 else [])
    for u in DE:
        lines += [f"{u},{i},1" for i in ("i5", "i6", "i7", "i9")]
    path.write_text("\n".join(lines) + "\n")
    return path


# "newbie" and "ghost" are not users of the dataset: stored, reported, and newbie is who asks below.
USERS_CSV = (
    "user_id,country,age\n"
    + "".join(f"{u},{'fr' if u in FR else 'de'},{20 + j}\n" for j, u in enumerate(FR + DE))
    + "newbie,fr,41\nghost,de,52\n"
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from app.api.app import create_app
    from app.config import Settings
    from app.migrate import upgrade

    tmp = tmp_path_factory.mktemp("users")
    settings = Settings(var_dir=tmp / "var", task_always_eager=True)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ds = upload(client, interactions(tmp / "i.csv")).json()["id"]
        spec = {"dataset_id": ds, "dim": 4, "wals": {"iterations": 3}, "evaluation": {"split": "none"}}
        job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
        assert job["status"] == "succeeded", job
        r = client.post(f"/v1/datasets/{ds}/users", files={"file": ("users.csv", USERS_CSV.encode())})
        assert r.status_code == 200, r.text
        yield {"client": client, "dataset": ds, "model": job["model_id"], "upload": r.json()}


def _recommend(env: dict[str, Any], user: str, **params: Any) -> Any:
    return env["client"].get(f"/v1/models/{env['model']}/users/{user}/recommendations", params={"k": 3, **params})


def _ranked(body: dict[str, Any]) -> list[tuple[str, float]]:
    return [(x["item"], x["score"]) for x in body["items"]]


def test_the_user_upload_reports_unknown_ids_and_is_separate_from_item_attributes(env):
    body, client, ds = env["upload"], env["client"], env["dataset"]
    assert body["kind"] == "users" and body["version"] == 1 and body["n_rows"] == 32
    assert {a["name"]: a["kind"] for a in body["attributes"]} == {"country": "categorical", "age": "numeric"}
    assert body["upload"]["n_unknown"] == 2 and body["upload"]["unknown_ids"] == ["newbie", "ghost"]
    assert client.get(f"/v1/datasets/{ds}/users").json()["kind"] == "users"
    assert client.get(f"/v1/datasets/{ds}/users/u3").json() == {
        "dataset_id": ds,
        "user": "u3",
        "attributes": {"country": "fr", "age": 23.0},
    }
    # User attributes are not item attributes: this dataset has none of those.
    assert client.get(f"/v1/datasets/{ds}/items").status_code == 404
    assert client.get(f"/v1/datasets/{ds}/users/nobody").status_code == 404


def test_user_upserts_replace_and_delete(env, tmp_path):
    client = env["client"]
    ds = upload(client, interactions(tmp_path / "j.csv")).json()["id"]

    def post(name: str, text: str, **form: str) -> Any:
        return client.post(f"/v1/datasets/{ds}/users", files={"file": (name, text.encode())}, data=form)

    assert post("a.csv", "user,country\nu1,fr\nu2,de\n").json()["version"] == 1
    second = post("b.ndjson", '{"user": "u2", "plan": "pro"}\n{"user": "u3", "plan": "free"}\n').json()
    assert second["version"] == 2 and (second["upload"]["new"], second["upload"]["updated"]) == (1, 1)
    assert client.get(f"/v1/datasets/{ds}/users/u2").json()["attributes"] == {"country": "de", "plan": "pro"}
    # Item ids in the id column: no row is a user of the dataset, so the upload is refused.
    wrong = post("c.csv", "user_id,country\ni0,fr\ni1,de\n")
    assert wrong.status_code == 422 and "is a user of dataset" in wrong.json()["detail"]
    replaced = post("d.csv", "user_id,tier\nu4,gold\n", mode="replace").json()
    assert [a["name"] for a in replaced["attributes"]] == ["tier"] and replaced["n_rows"] == 1
    assert client.get(f"/v1/datasets/{ds}/users/u2").status_code == 404
    assert client.delete(f"/v1/datasets/{ds}/users").status_code == 204
    assert client.get(f"/v1/datasets/{ds}/users").status_code == 404


def test_another_tenant_can_neither_read_nor_write_the_user_attributes(env):
    from app.db import get_sessionmaker
    from app.errors import NotFound
    from app.ingestion.attributes import AttributeOptions
    from app.services import catalogue

    state, ds = env["client"].app.state, env["dataset"]
    with get_sessionmaker(state.settings.resolved_database_url)() as session:
        assert catalogue.get_catalogue(session, ds, tenant="default", kind="users").tenant == "default"
        with pytest.raises(NotFound):
            catalogue.get_catalogue(session, ds, tenant="other", kind="users")
        with pytest.raises(NotFound):
            catalogue.row_attributes(session, state.store, ds, "u3", tenant="other", kind="users")
        with pytest.raises(NotFound):
            catalogue.upload_attributes(
                session,
                state.store,
                ds,
                io.BytesIO(b"user,x\nu1,1\n"),
                filename="a.csv",
                options=AttributeOptions(kind="users"),
                mode="upsert",
                tenant="other",
                limits=state.settings.limits,
                kind="users",
            )


def test_the_segment_fallback_ranks_by_the_users_sharing_the_value(env):
    glob = _recommend(env, "newbie").json()
    assert glob["source"] == "popular" and "segment" not in glob
    assert _ranked(glob)[0] == ("i9", 25.0) and {i for i, _ in _ranked(glob)[1:]} <= {"i5", "i6", "i7"}
    fr = _recommend(env, "newbie", segment="country")
    assert fr.status_code == 200, fr.text
    assert _ranked(fr.json()) == [("i0", 10.0), ("i1", 8.0), ("i9", 5.0)]
    assert fr.json()["source"] == "popular"
    assert fr.json()["segment"] == {"attribute": "country", "value": "fr", "n_users": 10}
    # ghost is de: another segment, another answer.
    de = _recommend(env, "ghost", segment="country").json()
    assert {i for i, _ in _ranked(de)} <= {"i5", "i6", "i7", "i9"} and de["segment"]["value"] == "de"
    assert de["segment"]["n_users"] == 20


def test_the_segment_keeps_exclusions_and_falls_back_to_global_popularity(env):
    # Excluded items leave; items nobody in the segment touched follow in global order (score 0).
    fr = _recommend(env, "newbie", segment="country", exclude=["i0"]).json()
    assert [i for i, _ in _ranked(fr)][:2] == ["i1", "i9"] and _ranked(fr)[2][1] == 0.0
    # So do the items the filter drops, as with the global fallback.
    kept = _recommend(env, "newbie", segment="country", filter='id not in ("i1", "i9")').json()
    assert [i for i, _ in _ranked(kept)][:1] == ["i0"] and {s for _, s in _ranked(kept)[1:]} == {0.0}
    # A user without attributes gets the global popular items, and no segment is named.
    plain = _recommend(env, "nobody", segment="country").json()
    assert plain["source"] == "popular" and "segment" not in plain and _ranked(plain)[0] == ("i9", 25.0)
    # A known user is answered by the model; fallback none keeps the 404.
    assert _recommend(env, "u1", segment="country").json()["source"] == "model"
    assert _recommend(env, "newbie", segment="country", fallback="none").status_code == 404


@pytest.mark.parametrize(("attribute", "says"), [("contry", "unknown user attribute"), ("age", "numeric")])
def test_a_segment_on_an_unknown_or_numeric_attribute_is_a_422_naming_it(env, attribute, says):
    r = _recommend(env, "newbie", segment=attribute)
    assert r.status_code == 422
    body = r.json()
    assert body["field"] == "segment" and f"'{attribute}'" in body["detail"] and says in body["detail"]
    assert "country" in body["detail"]  # the attributes that would do
