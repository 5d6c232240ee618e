"""/docs works without internet: its page loads only assets the API serves itself, from the package."""

from __future__ import annotations

import re

import pytest

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")


def _assets(html: str) -> list[str]:
    return [a or b for a, b in ASSET.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_reference_only_local_assets_that_answer(client, page: str):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = _assets(r.text)
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts, r.text
    remote = [a for a in assets if "://" in a or a.startswith("//")]
    assert not remote, f"{page} loads from outside the API: {remote}"
    for url in assets:
        if url == "/openapi.json":
            continue
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"]
        expected = {"js": "javascript", "css": "text/css", "png": "image/png"}[url.rsplit(".", 1)[-1]]
        assert expected in kind and len(asset.content) > 1000, (url, kind)
    if page == "/docs":
        assert any(a.endswith(".css") for a in assets)


def test_the_openapi_description_covers_both_algorithms_and_no_missing_file(client):
    info = client.get("/openapi.json").json()["info"]
    description = info["description"]
    assert "WALS" in description and "SGD" in description and "fold-in" in description
    assert "API.md" not in description  # a contract file users do not have
