"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A real Unfold API on a loopback port (the embedded server: SQLite, training in a thread behind the
API, as `unfold demo` runs it) gets planted data and a small WALS job; the browser opens `/`, sees
the job finish, its curves, metrics and embedding map, asks for recommendations through the query
box, and leaves a screenshot in test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.client.embedded import EmbeddedServer, embedded_server
from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv
from app.services.embedding_maps import EMBEDDING_MAP_FILE
from app.services.models import model_key
from tests.conftest import REPO
from tests.helpers import upload, wait_for_job

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("UNFOLD_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"
GROUPS = 4
TIMEOUT_MS = 60_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    """Skip on a developer's machine without the browser; in CI a missing browser is a failure."""
    if _in_ci():
        pytest.fail(f"{what}; .ci/run installs Debian's chromium and the dev extra installs playwright")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        # Debian's browser, never one Playwright downloads (`playwright install` is not used).
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    with embedded_server(tmp_path / "var") as running:
        yield running


def _planted_dataset(client: httpx.Client, folder: Path) -> dict:
    config = PlantedConfig(n_groups=GROUPS, users_per_group=100, items_per_group=50, noise=0.05, seed=0)
    write_planted_csv(planted_communities(config), folder / "planted.csv")
    response = upload(client, folder / "planted.csv")
    assert response.status_code == 201, response.text
    return response.json()


def _submit(client: httpx.Client, dataset_id: str) -> dict:
    spec = {"dataset_id": dataset_id, "algorithm": "wals", "dim": 16, "wals": {"iterations": 6}}
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()


def _watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    return errors


def test_dashboard_shows_a_finished_job_its_curves_map_and_answers_a_query(browser, server, tmp_path: Path):
    # Hold the job in the queue until the page is open, so the page sees it queued and follows it.
    train, held = server.app.state.enqueue, []
    server.app.state.enqueue = held.append
    with httpx.Client(base_url=server.url, timeout=60) as client:
        dataset = _planted_dataset(client, tmp_path)
        job = _submit(client, dataset["id"])
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = _watch_errors(page)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server.url + "/")
    page.locator("#datasets tbody tr").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#datasets tbody tr td").first.inner_text() == "planted.csv"

    # The job is picked on its own and shown queued; once it runs, the page follows it live to the end.
    page.locator("#job-status.queued").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#job-id").inner_text() == job["id"]
    assert held == [job["id"]]
    train(job["id"])
    page.locator(f'#jobs tbody tr[data-id="{job["id"]}"][data-status="succeeded"]').wait_for(timeout=TIMEOUT_MS)
    page.locator("#job-status.succeeded").wait_for(timeout=TIMEOUT_MS)
    assert f"{server.url}/v1/jobs/{job['id']}/events" in requests  # the server-sent events, not a reload
    assert page.locator("#job-progress").inner_text() == "refit iteration 6 of 6"

    # Curves: loss for the fit and the refit, held-out metrics per iteration.
    loss = page.locator("#loss-chart path.series")
    assert loss.count() == 2
    assert page.locator("#loss-chart circle.dot").count() == 12  # 6 iterations, fit and refit
    assert page.locator("#metric-chart path.series").count() >= 2  # recall@k, ndcg@k
    assert "recall@20" in page.locator("#metric-chart").inner_text()

    # The model's metrics: ranking next to folding diagnostics.
    page.locator("#model-card:not([hidden])").wait_for(timeout=TIMEOUT_MS)
    assert page.locator('#quality tr[data-metric="recall@20"]').count() == 1
    assert page.locator('#folding tr[data-metric="leakage@10"]').count() == 1

    # The embedding map: one circle per point, coloured by the planted groups, with their legend.
    page.locator("#map circle[data-item]").first.wait_for(timeout=TIMEOUT_MS)
    n_items = GROUPS * 50
    assert page.locator("#map circle[data-item]").count() == n_items
    legend = page.locator("#map-legend li[data-code]")
    assert legend.count() == GROUPS
    assert [t.split(" ")[0] for t in legend.all_inner_texts()] == [str(g) for g in range(GROUPS)]
    colours = set(page.locator("#map circle[data-item]").evaluate_all("cs => cs.map(c => c.getAttribute('fill'))"))
    assert len(colours) == GROUPS
    assert page.locator('#folding tr[data-metric="map separation"]').count() == 1

    # A query through the box: recommendations for a user, ringed on the map.
    page.fill("#query-id", "u0")
    page.fill("#query-k", "10")
    page.click("#query-form button")
    page.locator("#query-results li").nth(9).wait_for(timeout=TIMEOUT_MS)
    answered = page.locator("#query-results li").evaluate_all("ls => ls.map(l => l.dataset.item)")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        model_id = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
        expected = client.get(f"/v1/models/{model_id}/users/u0/recommendations", params={"k": 10}).json()
    assert page.locator("#model-id").inner_text() == model_id
    assert answered == [entry["item"] for entry in expected["items"]]
    assert page.locator("#map .marks circle.ring").count() == 10

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # An unknown user is a message under the box, not a broken page.
    page.fill("#query-id", "nobody")
    page.click("#query-form button")
    page.locator("#query-error:not([hidden])").wait_for(timeout=TIMEOUT_MS)
    assert "nobody" in page.locator("#query-error").inner_text()
    # No script error; the only failed request is that 404 (Chromium logs it on the console).
    assert [e for e in errors if "status of 404" not in e] == [], errors
    page.close()


def test_a_model_without_a_map_says_so(browser, server, tmp_path: Path):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        dataset = _planted_dataset(client, tmp_path)
        job = wait_for_job(client, _submit(client, dataset["id"])["id"], timeout=120)
    assert job["status"] == "succeeded", job
    # As for a model trained before maps were stored: its artifact has no map file.
    (server.app.state.store.local_dir(model_key(job["model_id"])) / EMBEDDING_MAP_FILE).unlink()
    page = browser.new_page()
    page.goto(f"{server.url}/#{job['id']}")
    page.locator("#map-missing:not([hidden])").wait_for(timeout=TIMEOUT_MS)
    assert "no map for this model" in page.locator("#map-missing").inner_text().lower()
    assert page.locator("#map circle").count() == 0
    # The rest of the model still shows, and queries still work.
    assert page.locator('#quality tr[data-metric="recall@20"]').count() == 1
    page.close()


def test_with_api_keys_the_page_asks_for_a_key_and_shows_only_that_tenants_data(browser, server, tmp_path: Path):
    from app.db import get_sessionmaker
    from app.services.api_keys import create_key

    # Keys exist before the first request, so the API requires one from the start.
    with get_sessionmaker(server.settings.resolved_database_url)() as session:
        _, ours = create_key(session, "acme", name="dashboard test")
        _, theirs = create_key(session, "globex")
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {theirs}"}) as other:
        (tmp_path / "theirs").mkdir()
        assert _planted_dataset(other, tmp_path / "theirs")["name"] == "planted.csv"
        other_job = _submit(other, other.get("/v1/datasets").json()["items"][0]["id"])
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {ours}"}) as client:
        path = tmp_path / "ours.csv"
        config = PlantedConfig(n_groups=GROUPS, users_per_group=60, items_per_group=30, noise=0.05, seed=1)
        write_planted_csv(planted_communities(config), path)
        dataset = upload(client, path).json()
        job = wait_for_job(client, _submit(client, dataset["id"])["id"], timeout=120)
    assert job["status"] == "succeeded", job

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = _watch_errors(page)
    page.goto(server.url + "/")
    page.locator("#auth-banner:not([hidden])").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#jobs tbody tr").count() == 0

    page.fill("#api-key", ours)
    page.click("#key-form button[type=submit]")
    page.locator(f'#jobs tbody tr[data-id="{job["id"]}"]').wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#auth-banner").is_hidden()
    # Only this tenant's dataset and job: the other tenant's are not listed.
    assert page.locator("#datasets tbody tr td:first-child").all_inner_texts() == ["ours.csv"]
    assert page.locator(f'#jobs tbody tr[data-id="{other_job["id"]}"]').count() == 0
    page.locator("#map circle[data-item]").first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#map circle[data-item]").count() == GROUPS * 30
    page.fill("#query-id", "u1")
    page.click("#query-form button")
    page.locator("#query-results li").nth(4).wait_for(timeout=TIMEOUT_MS)

    # The key stays in this browser: a reload needs no typing; forgetting it brings the question back.
    page.reload()
    page.locator(f'#jobs tbody tr[data-id="{job["id"]}"]').wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#auth-banner").is_hidden()
    page.click("#forget-key")
    page.reload()
    page.locator("#auth-banner:not([hidden])").wait_for(timeout=TIMEOUT_MS)
    # A wrong key is refused the same way.
    page.fill("#api-key", "unf_not-a-key")
    page.click("#key-form button[type=submit]")
    page.locator("#key-state", has_text="key refused").wait_for(timeout=TIMEOUT_MS)
    assert [e for e in errors if "status of 401" not in e] == [], errors
    page.close()


def test_the_page_shows_a_datasets_events_and_versions_and_an_aliases_retrains(browser, server, tmp_path: Path):
    from workers.tasks import check_retrains

    with httpx.Client(base_url=server.url, timeout=60) as client:
        dataset = _planted_dataset(client, tmp_path)
        job = wait_for_job(client, _submit(client, dataset["id"])["id"], timeout=120)
        assert client.put("/v1/aliases/prod", json={"model_id": job["model_id"]}).status_code == 200
        policy = {"after_events": 3, "spec": {"wals": {"iterations": 2}}}
        assert client.put("/v1/aliases/prod/policy", json=policy).status_code == 200
        events = [{"user": f"u{u}", "item": f"i{u}"} for u in range(3)]
        assert client.post(f"/v1/datasets/{dataset['id']}/events", json={"events": events}).status_code == 200
        [started] = check_retrains(server.settings)  # the beat's check; the embedded server trains inline
        retrain = client.get("/v1/aliases/prod").json()["retrains"][0]
    assert retrain["id"] == started and retrain["outcome"] in ("moved", "refused")

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = _watch_errors(page)
    page.goto(server.url + "/")
    page.locator("#events-card:not([hidden]) #versions tbody tr").nth(1).wait_for(timeout=TIMEOUT_MS)
    assert "3 events, 0 not in a version yet; latest version 2" in page.locator("#events-summary").inner_text()
    versions = page.locator("#versions tbody tr td:first-child").all_inner_texts()
    assert versions == ["2", "1 (upload)"]
    assert page.locator("#events-chart rect").count() >= 1  # this minute's bar
    alias = page.locator('#aliases .alias[data-name="prod"]')
    alias.locator(".retrains tbody tr").first.wait_for(timeout=TIMEOUT_MS)
    assert "after 3 events" in alias.inner_text() and "warm-started" in alias.inner_text()
    row = alias.locator(".retrains tbody tr").first
    assert row.locator(".status").inner_text() == retrain["outcome"]
    assert retrain["reason"] in row.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-events.png"), full_page=True)
    assert errors == [], errors
    page.close()
