"""A model deleted through one API process is gone from every other one within the documented 3 s.

The production shape, on PostgreSQL: `unfold api` with two processes (the kernel spreads fresh
connections over both) and a second `unfold api` instance on the same database and artifacts.
Before the fix the other processes kept answering 200 for the deleted model (48 s and more).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from app.migrate import upgrade
from tests.helpers import planted_csv
from tests.integration.conftest import free_port, unfold_process, wait_until
from tests.services import postgres_database

pytestmark = pytest.mark.integration

# docs/hardening.md: NAME_TTL + REFRESH_GRACE = 3 s, plus a lookup; slack for a loaded machine.
HONOURED_WITHIN = 5.0


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _statuses(urls: list[str]) -> list[int]:
    # A fresh connection per request, so that both processes of the first instance answer some.
    return [httpx.get(url, timeout=10).status_code for url in urls]


def test_a_deleted_model_is_gone_from_every_process(tmp_path: Path):
    with postgres_database() as db_url:
        upgrade(db_url)
        ports = free_port(), free_port()
        base = {
            "UNFOLD_DATABASE_URL": db_url,
            "UNFOLD_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "UNFOLD_VAR_DIR": str(tmp_path / "var"),
            "UNFOLD_TASK_ALWAYS_EAGER": "true",  # training inline: no worker needed for one tiny model
            "UNFOLD_TORCH_THREADS": "1",
        }
        first, second = (f"http://127.0.0.1:{port}" for port in ports)
        with (
            unfold_process(
                ["api"], base | {"UNFOLD_PORT": str(ports[0]), "UNFOLD_API_WORKERS": "2"}, tmp_path, tmp_path / "a.log"
            ),
            unfold_process(
                ["api"], base | {"UNFOLD_PORT": str(ports[1]), "UNFOLD_API_WORKERS": "1"}, tmp_path, tmp_path / "b.log"
            ),
        ):
            for url, log in ((first, "a.log"), (second, "b.log")):
                wait_until(lambda url=url: _ready(url), 60, f"{url} ready", tmp_path / log)
            with planted_csv(tmp_path / "p.csv", 40, 30).open("rb") as fh:
                ds = httpx.post(f"{first}/v1/datasets", files={"file": ("p.csv", fh)}, timeout=60).json()
            spec = {"dataset_id": ds["id"], "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
            job = httpx.post(f"{first}/v1/jobs", json=spec, timeout=300).json()
            job = httpx.get(f"{first}/v1/jobs/{job['id']}", timeout=10).json()
            assert job["status"] == "succeeded", job
            model = job["model_id"]
            assert httpx.put(f"{first}/v1/aliases/prod", json={"model_id": model}).status_code == 200
            paths = [
                f"/v1/models/{name}/{what}"
                for name in (model, "prod")
                for what in ("users/u3/recommendations?k=3", "items/i3/similar?k=3")
            ]
            urls = [server + path for server in (first, second) for path in paths]
            for _ in range(6):  # every process has the model loaded and both names remembered
                assert _statuses(urls) == [200] * len(urls)

            assert httpx.delete(f"{first}/v1/models/{model}").status_code == 204
            deleted = time.monotonic()
            while (answers := _statuses(urls)) != [404] * len(urls):
                assert time.monotonic() - deleted < HONOURED_WITHIN, f"still {answers}"
            took = time.monotonic() - deleted
            # One round of 404s may have met only the process of the first instance that already dropped the
            # model: the promise is for every process once HONOURED_WITHIN has passed, so check from then on.
            time.sleep(max(0.0, deleted + HONOURED_WITHIN - time.monotonic()))
            for _ in range(5):  # and it stays so, on every process
                assert _statuses(urls) == [404] * len(urls)
            assert took < HONOURED_WITHIN
