"""`unfold keys create/list/revoke`: admin commands on the configured database, and a client using a key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.db import get_sessionmaker
from app.migrate import upgrade
from app.services import api_keys


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite database that UNFOLD_DATABASE_URL names (settings are read afresh)."""
    url = f"sqlite:///{tmp_path / 'unfold.db'}"
    upgrade(url)
    monkeypatch.setenv("UNFOLD_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _keys(*args: str) -> object:
    return CliRunner().invoke(cli, ["keys", *args], env={"COLUMNS": "200"})


def test_create_prints_the_key_alone_and_stores_only_its_hash(database: str):
    result = _keys("create", "--tenant", "acme", "--name", "ci")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and key.startswith("unf_") and len(key) > 40
    assert "acme" in result.stderr and key not in result.stderr
    with get_sessionmaker(database)() as session:
        assert api_keys.resolve(session, key) == "acme"
        [row] = api_keys.list_keys(session)
        assert row.key_hash == api_keys.hash_key(key) and key not in (row.key_hash, row.prefix)
        assert row.name == "ci" and key.startswith(row.prefix)


def test_list_shows_prefixes_never_keys_and_revoke_ends_a_key(database: str):
    first = _keys("create", "--tenant", "acme").stdout.strip()
    second = _keys("create", "--tenant", "globex", "--name", "deploy").stdout.strip()
    listed = _keys("list")
    assert listed.exit_code == 0, listed.output
    for key in (first, second):
        assert key not in listed.stdout and key[:12] in listed.stdout
    assert "acme" in listed.stdout and "globex" in listed.stdout and "deploy" in listed.stdout
    with get_sessionmaker(database)() as session:
        acme_id = next(k.id for k in api_keys.list_keys(session) if k.tenant == "acme")
    revoked = _keys("revoke", acme_id)
    assert revoked.exit_code == 0, revoked.output
    assert acme_id in revoked.stderr
    with get_sessionmaker(database)() as session:
        assert api_keys.resolve(session, first) is None
        assert api_keys.resolve(session, second) == "globex"
    row = next(line for line in _keys("list").stdout.splitlines() if acme_id in line)
    assert row.count("20") >= 2  # a created and a revoked time
    assert _keys("revoke", acme_id).exit_code == 0  # again: nothing more to do


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "--tenant", "bad tenant!"), "tenant"),
        (("create", "--tenant", ""), "tenant"),
        (("revoke", "key_nope"), "no API key 'key_nope'"),
    ],
)
def test_refusals_are_one_line_and_exit_1(database: str, args: tuple[str, ...], message: str):
    result = _keys(*args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_an_unmigrated_database_is_named_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UNFOLD_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        result = _keys("list")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "unfold migrate" in result.stderr and "Traceback" not in result.output


def test_the_client_sends_unfold_api_key(tmp_path: Path):
    from app.client.embedded import embedded_server

    with embedded_server(tmp_path / "srv") as server:
        with get_sessionmaker(server.settings.resolved_database_url)() as session:
            _, key = api_keys.create_key(session, "acme")
        env = {"UNFOLD_URL": server.url, "COLUMNS": "200"}
        refused = CliRunner().invoke(cli, ["datasets", "list"], env={**env, "UNFOLD_API_KEY": None})
        assert refused.exit_code == 3 and "needs a key" in refused.output, refused.output
        wrong = CliRunner().invoke(cli, ["datasets", "list"], env={**env, "UNFOLD_API_KEY": "unf_wrong"})
        assert wrong.exit_code == 3 and "unknown or revoked" in wrong.output, wrong.output
        allowed = CliRunner().invoke(cli, ["datasets", "list"], env={**env, "UNFOLD_API_KEY": key})
        assert allowed.exit_code == 0, allowed.output
