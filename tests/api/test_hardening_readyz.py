"""/readyz asks the database a real question each time: a deleted SQLite file is not ready."""

from __future__ import annotations


def test_readyz_is_ok_then_503_once_the_sqlite_file_is_gone(client, settings):
    assert client.get("/readyz").json()["checks"]["database"] == "ok"
    assert client.get("/v1/datasets").status_code == 200  # a pooled connection is open on the file
    database = settings.var_dir / "unfold.db"
    database.unlink()
    response = client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.json()["checks"]["database"].startswith("error:")
    assert not database.exists()  # the probe did not leave an empty database behind either


def test_readyz_is_503_on_a_database_without_the_schema(client, settings):
    from sqlalchemy import text

    from app.db import get_engine

    with get_engine(settings.resolved_database_url).begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "alembic_version" in response.json()["checks"]["database"]
