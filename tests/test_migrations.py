"""The schema comes only from Alembic: the migrations must produce exactly what the models declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

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


BEFORE_TENANTS, TENANTS = "26c15d440f72", "7a3c0e5d1b20"
NOW = "2026-11-29 00:00:00+00:00"


def _rows_before_tenants(conn: Connection) -> None:
    """One row of each table as the schema before tenants had them."""
    conn.execute(
        text(
            "INSERT INTO datasets (id, name, status, format, n_users, n_items, n_interactions, density,"
            " checksum, size_bytes, stats, artifact_key, created_at)"
            " VALUES ('ds_1', 'd', 'ready', 'csv', 1, 1, 1, 1.0, :c, 1, '{}', 'datasets/ds_1', :now)"
        ),
        {"c": "0" * 64, "now": NOW},
    )
    conn.execute(
        text(
            "INSERT INTO jobs (id, dataset_id, algorithm, status, spec, history, cancel_requested, attempts,"
            " created_at, kind) VALUES ('job_1', 'ds_1', 'wals', 'succeeded', '{}', '[]', false, 1, :now, 'train')"
        ),
        {"now": NOW},
    )
    conn.execute(
        text(
            'INSERT INTO models (id, job_id, dataset_id, algorithm, dim, spec, metrics, "index", artifact_key,'
            " created_at) VALUES ('mdl_1', 'job_1', 'ds_1', 'wals', 4, '{}', '{}', '{}', 'models/mdl_1', :now)"
        ),
        {"now": NOW},
    )
    conn.execute(text("INSERT INTO aliases (name, model_id, updated_at) VALUES ('prod', 'mdl_1', :now)"), {"now": NOW})
    conn.execute(
        text(
            "INSERT INTO tuning_runs (id, dataset_id, status, spec, search, metric, trials_total, created_at)"
            " VALUES ('tun_1', 'ds_1', 'succeeded', '{}', '{}', 'ndcg@20', 1, :now)"
        ),
        {"now": NOW},
    )


def _assert_existing_rows_become_tenant_default(url: str) -> None:
    upgrade(url, BEFORE_TENANTS)
    engine = get_engine(url)
    with engine.begin() as conn:
        _rows_before_tenants(conn)
    upgrade(url, TENANTS)
    assert inspect(engine).get_pk_constraint("aliases")["constrained_columns"] == ["tenant", "name"]
    with engine.begin() as conn:
        for table in ("datasets", "jobs", "models", "aliases", "tuning_runs"):
            assert conn.execute(text(f"SELECT tenant FROM {table}")).scalars().all() == ["default"], table
        assert conn.execute(text("SELECT model_id FROM aliases WHERE name = 'prod'")).scalar_one() == "mdl_1"
        # Alias names are unique per tenant now, no longer globally...
        conn.execute(
            text("INSERT INTO aliases (tenant, name, model_id, updated_at) VALUES ('acme', 'prod', 'mdl_1', :now)"),
            {"now": NOW},
        )
    # ...but still within one tenant.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text("INSERT INTO aliases (tenant, name, model_id, updated_at) VALUES ('acme', 'prod', 'mdl_1', :now)"),
            {"now": NOW},
        )
    # Down again: the other tenant's alias goes (names alone must be unique), the default one stays.
    command.downgrade(alembic_config(url), BEFORE_TENANTS)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT name, model_id FROM aliases")).all() == [("prod", "mdl_1")]
        assert conn.execute(text("SELECT id FROM datasets")).scalars().all() == ["ds_1"]
    upgrade(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT tenant FROM aliases")).scalars().all() == ["default"]


def test_sqlite_upgrade_gives_existing_rows_the_default_tenant(tmp_path: Path):
    _assert_existing_rows_become_tenant_default(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.integration
def test_postgresql_upgrade_gives_existing_rows_the_default_tenant():
    with postgres_database() as url:
        _assert_existing_rows_become_tenant_default(url)
