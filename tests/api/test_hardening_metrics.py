"""/metrics is open by default, and behind its own key when UNFOLD_METRICS_KEY is set."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.migrate import upgrade


def test_metrics_are_open_without_a_metrics_key(client):
    assert client.get("/metrics").status_code == 200


def test_a_metrics_key_puts_metrics_behind_it(settings):
    settings = settings.model_copy(update={"metrics_key": "s3cret-scraper"})
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-scraper"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "unfold_" not in refused.text
        allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scraper"})
        assert allowed.status_code == 200 and "unfold_hot_path_answers" in allowed.text
