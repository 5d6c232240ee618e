"""The README's curl walkthrough, run as it stands against `unfold up` in a folder with no ../shared."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.integration.conftest import free_port, unfold_process, wait_until

pytestmark = pytest.mark.integration


def walkthrough() -> str:
    """The bash block of the README's "Walkthrough (curl)" section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Walkthrough (curl)", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the walkthrough section should hold exactly one bash block"
    return blocks[0]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_the_readme_walkthrough_runs_verbatim_in_a_bare_clone(tmp_path: Path):
    # The user's clone: the repository's .venv and nothing beside it (no ../shared/data).
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(REPO / ".venv")
    assert not (clone.parent / "shared").exists()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    with unfold_process(["up"], {"UNFOLD_PORT": str(port)}, tmp_path / "clone", log):
        wait_until(lambda: _ready(url), 90, "unfold up to be ready", log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNFOLD_")} | {"UNFOLD_URL": url}
        run = subprocess.run(
            ["bash", "-c", walkthrough()], cwd=clone, env=env, capture_output=True, text=True, timeout=300
        )
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}\n{log.read_text()[-3000:]}"
    lines = run.stdout.splitlines()
    assert not [line for line in lines if line.strip() == "null"], run.stdout
    # Each query printed items with the synthetic ids: a list of {item, score} per answer.
    answers = [line for line in lines if line.startswith('[{"item":"i')]
    assert len(answers) >= 4, run.stdout
    assert '"name":"prod"' in run.stdout, run.stdout


def test_the_walkthrough_stops_at_the_first_refused_request(tmp_path: Path):
    # Nothing listens on this port: the first request fails and the script ends there, non-zero,
    # instead of carrying on with empty ids.
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNFOLD_")}
    env["UNFOLD_URL"] = f"http://127.0.0.1:{free_port()}"
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    run = subprocess.run(["bash", "-c", walkthrough()], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "Failed to connect" in run.stderr and "null" not in run.stdout, (run.stdout, run.stderr)
