"""The embedded defaults: `unfold up` alone (SQLite, folder broker, ./var) serves the whole flow."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import upload, wait_for_job
from tests.integration.conftest import free_port, unfold_process, wait_until

pytestmark = pytest.mark.integration


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_unfold_up_serves_upload_train_and_query(tmp_path: Path, shared_data: Path):
    port = free_port()
    log = tmp_path / "up.log"
    env = {"UNFOLD_PORT": str(port)}
    with (
        unfold_process(["up"], env, tmp_path, log) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        wait_until(lambda: _ready(client), 90, "unfold up to be ready", log)
        ds = upload(client, shared_data / "ml-100k" / "u.data").json()
        r = client.post("/v1/jobs", json={"dataset_id": ds["id"], "wals": {"iterations": 5}})
        assert r.status_code == 202
        job = wait_for_job(client, r.json()["id"], timeout=300)
        assert job["status"] == "succeeded", (job, log.read_text()[-3000:])
        recs = client.get(f"/v1/models/{job['model_id']}/users/42/recommendations").json()
        assert len(recs["items"]) == 10
        # Embedded defaults put everything under ./var of the working directory.
        assert (tmp_path / "var" / "unfold.db").exists()
        assert any((tmp_path / "var" / "artifacts" / "models").iterdir())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
