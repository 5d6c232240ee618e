"""Fixtures shared by every test directory: data location, settings, an API client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("UNFOLD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says why (it is absent in a user's clone, present in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set UNFOLD_SHARED_DATA); they are never in the repo")
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path: Path):
    """Embedded settings in a temporary folder; training runs inside the API process."""
    from app.config import Settings

    return Settings(var_dir=tmp_path / "var", task_always_eager=True, max_upload_mb=5)


@pytest.fixture
def client(settings) -> Iterator:
    """A TestClient over a freshly migrated SQLite database."""
    from fastapi.testclient import TestClient

    from app.api.app import create_app
    from app.migrate import upgrade

    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto) for one test module, with its credentials in the environment."""
    from tests.s3 import CREDENTIALS, s3_server

    with pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        with s3_server() as endpoint:
            yield endpoint
