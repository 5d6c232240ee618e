"""The dashboard's shell and assets: served without a key (they hold no data), while /v1 still needs one."""

from __future__ import annotations

import re

from app.db import get_sessionmaker
from app.services import api_keys


def test_the_page_and_its_assets_need_no_key_but_the_data_does(client, settings):
    with get_sessionmaker(settings.resolved_database_url)() as session:
        api_keys.create_key(session, "acme")
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'id="api-key"' in html and 'id="map"' in html and 'id="query-form"' in html
    assets = re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', html)
    assert sorted(a.split("?")[0].rsplit("/", 1)[1] for a in assets) == ["charts.js", "dashboard.css", "dashboard.js"]
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200, asset
        assert r.headers["content-type"].split(";")[0] in ("text/css", "text/javascript", "application/javascript")
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/dashboard/static/missing.js").status_code == 404


def test_asset_urls_change_with_the_assets(tmp_path, monkeypatch):
    """The ?v= of every asset is a hash of their contents, so a browser never runs stale scripts."""
    import shutil

    from app.web import dashboard

    def version() -> str:
        dashboard._page.cache_clear()
        found = re.findall(r"\?v=([0-9a-f]{12})", dashboard._page("test"))
        assert len(found) == 3 and len(set(found)) == 1
        return found[0]

    before = version()
    static = tmp_path / "static"
    shutil.copytree(dashboard.STATIC, static)
    monkeypatch.setattr(dashboard, "STATIC", static)
    assert version() == before  # same contents, same URLs
    (static / "charts.js").write_text((static / "charts.js").read_text() + "\n// changed\n")
    assert version() != before
    dashboard._page.cache_clear()
