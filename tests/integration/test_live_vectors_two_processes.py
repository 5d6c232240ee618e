"""Events posted to one API process change a user's recommendations in another within 1 s (issue 19).

The production shape on PostgreSQL: two `unfold api` instances on the same database and artifacts. The events
reach the other process through the database only: it has no other way to learn about them.
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

WITHIN = 1.0


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _items(url: str, user: str) -> list[str]:
    response = httpx.get(f"{url}/v1/models/prod/users/{user}/recommendations?k=10", timeout=10)
    assert response.status_code == 200, response.text
    return [e["item"] for e in response.json()["items"]]


def test_events_posted_to_one_process_are_seen_by_another_within_a_second(tmp_path: Path):
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
            unfold_process(["api"], base | {"UNFOLD_PORT": str(ports[0])}, tmp_path, tmp_path / "a.log"),
            unfold_process(["api"], base | {"UNFOLD_PORT": str(ports[1])}, tmp_path, tmp_path / "b.log"),
        ):
            for url, log in ((first, "a.log"), (second, "b.log")):
                wait_until(lambda url=url: _ready(url), 60, f"{url} ready", tmp_path / log)
            with planted_csv(tmp_path / "p.csv", 40, 30).open("rb") as fh:
                ds = httpx.post(f"{first}/v1/datasets", files={"file": ("p.csv", fh)}, timeout=60).json()["id"]
            spec = {"dataset_id": ds, "dim": 8, "wals": {"iterations": 6}, "evaluation": {"split": "none"}}
            job = httpx.post(f"{first}/v1/jobs", json=spec, timeout=300).json()
            job = httpx.get(f"{first}/v1/jobs/{job['id']}", timeout=10).json()
            assert job["status"] == "succeeded", job
            assert httpx.put(f"{first}/v1/aliases/prod", json={"model_id": job["model_id"]}).status_code == 200
            before = _items(second, "u1")
            assert _items(first, "u1") == before

            # Five items of the other community, posted to the first process.
            mine = [{"user": "u1", "item": f"i{i}", "weight": 3, "event_id": f"e{i}"} for i in range(20, 25)]
            events = [*mine, {"user": "newcomer", "item": "i2"}, {"user": "newcomer", "item": "i5"}]
            posted_at = time.monotonic()
            assert httpx.post(f"{first}/v1/datasets/{ds}/events", json={"events": events}).status_code == 200
            posted = time.monotonic()
            while (after := _items(second, "u1")) == before:
                assert time.monotonic() - posted < WITHIN, "the other process still answers as before the events"
                time.sleep(0.02)
            took = time.monotonic() - posted
            assert took < WITHIN
            assert not {e["item"] for e in mine} & set(after)
            newcomer = httpx.get(f"{second}/v1/models/prod/users/newcomer/recommendations?k=5", timeout=10)
            assert newcomer.status_code == 200, newcomer.text
            assert newcomer.json()["source"] == "fold_in"
            items = [e["item"] for e in newcomer.json()["items"]]
            assert all(int(i[1:]) < 15 for i in items) and not {"i2", "i5"} & set(items)
            # Both processes answer alike once they have read the events.
            assert _items(first, "u1") == after
            print(f"seen by the other process {took:.3f} s after the POST returned ({posted - posted_at:.3f} s post)")
