"""The schema comes only from Alembic: the migrations must produce exactly what the models declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.db import get_engine
from app.migrate import alembic_config, upgrade
from app.models import Base
from tests.services import postgres_database


def _assert_models_match_migrations(url: str) -> None:
    upgrade(url)
    with get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    # Every migration can be undone and redone.
    command.downgrade(alembic_config(url), "base")
    upgrade(url)


def test_sqlite_schema_matches_models(tmp_path: Path):
    _assert_models_match_migrations(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.integration
def test_postgresql_schema_matches_models():
    with postgres_database() as url:
        _assert_models_match_migrations(url)
