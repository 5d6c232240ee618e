"""Readiness checks of what the API depends on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.db import get_engine


def check_database(url: str) -> None:
    """Raise unless the database answers a query on Unfold's own schema, on a connection of this probe.

    SELECT 1 said ok with the SQLite file deleted under a running API (SQLite answers it from any
    file, even the empty one it creates), while every request failed.
    """
    engine = get_engine(url)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:" and not Path(database).exists():
        # Checked before connecting: connecting would create an empty file in its place.
        raise FileNotFoundError(f"the SQLite database {database} does not exist")
    with engine.connect() as conn:
        conn.execute(text("SELECT version_num FROM alembic_version")).one()
