"""An embedded Unfold (real HTTP on a loopback port, training in a thread) for the client commands."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.client.embedded import EmbeddedServer, embedded_server
from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with embedded_server(tmp_path_factory.mktemp("unfold")) as running:
        yield running


class Unfold:
    """Runs `unfold ...` against the embedded server, as a user's shell would."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.runner = CliRunner()

    def __call__(self, *args: str, url: str | None = None) -> Any:
        env: dict[str, str | None] = {"UNFOLD_URL": url or self.server.url, "COLUMNS": "200", "UNFOLD_API_KEY": None}
        return self.runner.invoke(cli, list(args), env=env)

    @contextmanager
    def jobs_stay_queued(self) -> Iterator[list[str]]:
        """Submitted jobs are not run (as with no worker); yields the ids that were sent."""
        sent: list[str] = []
        state = self.server.app.state
        enqueue = state.enqueue
        state.enqueue = sent.append
        try:
            yield sent
        finally:
            state.enqueue = enqueue


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def unfold(server: EmbeddedServer) -> Unfold:
    return Unfold(server)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small communities with group columns (leakage@10 is measurable)."""
    path = tmp_path_factory.mktemp("data") / "planted.csv"
    config = PlantedConfig(users_per_group=40, items_per_group=30, interactions_per_user=8, noise=0.05)
    write_planted_csv(planted_communities(config), path)
    return path


@pytest.fixture(scope="module")
def dataset(server: EmbeddedServer, planted: Path) -> str:
    result = Unfold(server)("datasets", "upload", str(planted), "-q")
    assert result.exit_code == 0, result.output
    return str(result.stdout.strip())
