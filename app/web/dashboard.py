"""Serve the dashboard: the page shell at `/` and its static files; every figure comes from /v1.

The shell and its assets carry no data, so they need no key. The page's JavaScript fetches the JSON
API with `Authorization: Bearer <key>`, the key typed into the page (kept in localStorage); a 401
makes the page ask for one. So the dashboard sees exactly what the key's tenant may see.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from string import Template

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_URL = "/dashboard/static"

router = APIRouter(include_in_schema=False)


@cache
def _page(version: str) -> str:
    """The shell, with asset URLs that change whenever an asset does (so browsers never mix versions)."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    template = Template((HERE / "templates" / "index.html").read_text(encoding="utf-8"))
    return template.substitute(static=STATIC_URL, assets=digest.hexdigest()[:12], version=version)


@router.get("/", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    return HTMLResponse(_page(_version()), headers={"Cache-Control": "no-cache"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unfold")
    except PackageNotFoundError:
        return "dev"


def install_dashboard(app: FastAPI) -> None:
    """Add the page at `/` and its assets under /dashboard/static."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="dashboard-static")
