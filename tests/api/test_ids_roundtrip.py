"""Every id an upload accepts is usable in every route and in the CLI (issue 17, item 3).

Through a real server (uvicorn on a loopback port, as `unfold up` runs it): ids with `/`, `%`, `?`,
`#`, spaces, non-ASCII letters and dot segments go into the path percent-encoded (as the CLI's
client writes them), and come back as themselves.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.client.api import UnfoldClient, _segment
from app.client.embedded import EmbeddedServer, embedded_server
from tests.helpers import wait_for_job

ODD = [
    "a/b",
    "/lead",
    "trail/",
    "50%",
    "a%2Fb",
    "what?",
    "#1",
    "two words",
    "ünïcødé",
    "日本/語",
    "x/recommendations",
    "..",
    ".",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, str]]:
    folder = tmp_path_factory.mktemp("ids")
    # Users and items both carry the odd ids; two groups so that similar items are well defined.
    users = [f"u{i}" for i in range(20)] + ODD
    items = [f"i{i}" for i in range(20)] + ODD
    path = folder / "odd.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["user", "item", "weight"])
        for n, user in enumerate(users):
            for m in range(8):
                out.writerow([user, items[(n + 3 * m) % len(items)], 1 + m % 3])
    with embedded_server(folder / "var") as server:
        with httpx.Client(base_url=server.url, timeout=60) as http, path.open("rb") as fh:
            ds = http.post("/v1/datasets", files={"file": ("odd.csv", fh)}).json()
            assert ds.get("n_users") == len(users), ds
            spec = {"dataset_id": ds["id"], "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
            job = wait_for_job(http, http.post("/v1/jobs", json=spec).json()["id"])
        assert job["status"] == "succeeded", job
        yield server, job["model_id"]


@pytest.mark.parametrize("odd", ODD)
def test_an_odd_user_id_gets_recommendations_on_both_paths(served, odd):
    server, model = served
    url = f"{server.url}/v1/models/{model}/users/{_segment(odd)}/recommendations?k=3"
    answers = [httpx.get(url) for _ in range(3)]  # the first by the route, the later ones by the hot path
    assert [r.status_code for r in answers] == [200] * 3, answers[0].text
    assert answers[0].content == answers[2].content
    # An unknown id spelled alike is a documented 404 naming it, not the router's bare 404.
    missing = httpx.get(
        f"{server.url}/v1/models/{model}/users/{_segment(odd + '/nope')}/recommendations", params={"fallback": "none"}
    )
    assert missing.status_code == 404 and odd + "/nope" in missing.json()["detail"]


@pytest.mark.parametrize("odd", ODD)
def test_an_odd_item_id_gets_similar_items_and_is_returned_as_itself(served, odd):
    server, model = served
    response = httpx.get(f"{server.url}/v1/models/{model}/items/{_segment(odd)}/similar?k=40")
    assert response.status_code == 200, response.text
    returned = {entry["item"] for entry in response.json()["items"]}
    assert odd not in returned and set(ODD) - {odd} <= returned


def test_odd_ids_in_bodies_round_trip(served):
    server, model = served
    batch = httpx.post(f"{server.url}/v1/models/{model}/recommendations/batch", json={"users": ODD, "k": 2}).json()
    assert set(batch["results"]) == set(ODD) and batch["unknown_users"] == []
    fold = httpx.post(f"{server.url}/v1/models/{model}/recommendations", json={"items": ODD, "k": 2}).json()
    assert fold["unknown_items"] == []


@pytest.mark.parametrize("odd", ["a/b", "50%", "what?", "#1", "two words", "日本/語", "..", "."])
def test_the_cli_and_its_client_take_odd_ids(served, odd):
    server, model = served
    with UnfoldClient(server.url) as client:
        assert len(client.recommend(model, odd, 3)["items"]) == 3
        assert odd not in {entry["item"] for entry in client.similar(model, odd, 3)["items"]}
    result = CliRunner().invoke(cli, ["recommend", model, odd, "-k", "2", "--json"], env={"UNFOLD_URL": server.url})
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["similar", model, odd, "-k", "2", "--json"], env={"UNFOLD_URL": server.url})
    assert result.exit_code == 0, result.output
