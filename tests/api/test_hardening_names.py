"""A deleted model or a moved/removed alias is honoured by every API process within the documented time.

ModelCache remembers names for NAME_TTL, then lets one request refresh them while the others are
answered from the old entry for REFRESH_GRACE: a delete made through another process must show here
within NAME_TTL + REFRESH_GRACE (plus the lookup itself), and a name whose refresh says NotFound must
be dropped at once rather than keep serving the model it used to name.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.errors import NotFound
from app.migrate import upgrade
from app.services import serving
from tests.api.test_model_cache import _publish
from tests.helpers import planted_csv, upload

# What docs/hardening.md promises: NAME_TTL + REFRESH_GRACE, and a little for the lookups themselves.
HONOURED_WITHIN = serving.ModelCache.NAME_TTL + serving.ModelCache.REFRESH_GRACE + 1.0


def test_a_name_whose_refresh_says_not_found_is_dropped_at_once(tmp_path: Path, monkeypatch):
    from app.storage import LocalArtifactStore

    store = LocalArtifactStore(tmp_path / "artifacts")
    key = _publish(store, "a", 0)
    monkeypatch.setattr(serving.ModelCache, "NAME_TTL", 0.05)
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    cache.resolve("t", "prod", lambda: ("a", key))
    time.sleep(0.1)
    assert cache.peek("t", "prod") is None  # expired: this caller refreshes it...

    def gone() -> tuple[str, str]:
        raise NotFound("no model or alias 'prod'")

    with pytest.raises(NotFound):
        cache.resolve("t", "prod", gone)
    # ...and since the database says it is gone, nobody is answered from the old entry any more.
    assert cache.peek("t", "prod") is None
    assert cache.peek("t", "prod") is None


def test_a_model_id_whose_refresh_says_not_found_is_evicted(tmp_path: Path, monkeypatch):
    from app.storage import LocalArtifactStore

    store = LocalArtifactStore(tmp_path / "artifacts")
    key = _publish(store, "a", 0)
    monkeypatch.setattr(serving.ModelCache, "NAME_TTL", 0.05)
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    cache.resolve("t", "a", lambda: ("a", key))
    cache.resolve("t", "prod", lambda: ("a", key))
    time.sleep(0.1)

    def gone() -> tuple[str, str]:
        raise NotFound("no model or alias 'a'")

    with pytest.raises(NotFound):
        cache.resolve("t", "a", gone)
    # The model itself is gone from the database: its memory is freed and no other name reaches it.
    assert cache.loaded_ids() == []
    assert cache.peek("t", "prod") is None


@pytest.fixture
def two_instances(tmp_path: Path):
    """Two API instances (two apps, each with its own caches) on one database and one artifact store."""
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5)
    upgrade(settings.resolved_database_url)
    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as a,
        TestClient(create_app(settings), raise_server_exceptions=False) as b,
    ):
        ds = upload(a, planted_csv(tmp_path / "p.csv", 40, 30)).json()["id"]
        models = []
        for seed in (1, 2):
            spec = {
                "dataset_id": ds,
                "dim": 4,
                "seed": seed,
                "wals": {"iterations": 2},
                "evaluation": {"split": "none"},
            }
            job = a.get(f"/v1/jobs/{a.post('/v1/jobs', json=spec).json()['id']}").json()
            assert job["status"] == "succeeded", job
            models.append(job["model_id"])
        yield a, b, models


def _until_all(client: TestClient, urls: list[str], status: int, within: float) -> float:
    """Keep querying every url until each answers `status`; the seconds that took (fails past `within`)."""
    start = time.monotonic()
    while True:
        answers = [client.get(url).status_code for url in urls]
        elapsed = time.monotonic() - start
        if all(s == status for s in answers):
            # Stays that way: a later request is never answered from a stale entry again.
            for _ in range(int(serving.ModelCache.REFRESH_GRACE / 0.05) + 5):
                assert [client.get(url).status_code for url in urls] == [status] * len(urls)
                time.sleep(0.05)
            return elapsed
        assert elapsed < within, f"still {answers} after {elapsed:.1f}s"
        time.sleep(0.05)


def _queries(model_or_alias: str) -> list[str]:
    base = f"/v1/models/{model_or_alias}"
    # The hot path (user recommendations) and a route the hot path never answers.
    return [f"{base}/users/u3/recommendations?k=3", f"{base}/items/i3/similar?k=3"]


def test_a_model_deleted_through_one_instance_is_gone_from_the_other(two_instances):
    a, b, (model, _) = two_instances
    assert a.put("/v1/aliases/prod", json={"model_id": model}).status_code == 200
    urls = _queries(model) + _queries("prod")
    for _ in range(3):  # b has the model loaded and both names remembered, the hot path warm
        assert [b.get(u).status_code for u in urls] == [200] * len(urls)
    assert a.delete(f"/v1/models/{model}").status_code == 204
    _until_all(b, urls, 404, HONOURED_WITHIN)


def test_an_alias_deleted_or_moved_through_one_instance_is_honoured_by_the_other(two_instances):
    a, b, (first, second) = two_instances
    assert a.put("/v1/aliases/prod", json={"model_id": first}).status_code == 200
    url = "/v1/models/prod/users/u3/recommendations?k=3"
    for _ in range(3):
        assert b.get(url).json()["model_id"] == first
    assert a.put("/v1/aliases/prod", json={"model_id": second}).status_code == 200
    start = time.monotonic()
    while b.get(url).json()["model_id"] != second:
        assert time.monotonic() - start < HONOURED_WITHIN
        time.sleep(0.05)
    for _ in range(40):  # never the old model again
        assert b.get(url).json()["model_id"] == second
        time.sleep(0.05)
    assert a.delete("/v1/aliases/prod").status_code == 204
    _until_all(b, _queries("prod"), 404, HONOURED_WITHIN)
