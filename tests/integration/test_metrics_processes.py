"""/metrics with several API processes: every scrape sums all of them, so no counter goes backwards."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.helpers import planted_csv, upload
from tests.integration.conftest import free_port, unfold_process, wait_until

pytestmark = pytest.mark.integration

N = 24
ROUTE = "/v1/models/{model_id}/users/{user}/recommendations"


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_scrapes_after_requests_spread_over_two_processes_all_read_the_same_counts(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"UNFOLD_PORT": str(port), "UNFOLD_API_WORKERS": "2", "UNFOLD_TASK_ALWAYS_EAGER": "true"}
    log = tmp_path / "api.log"
    with unfold_process(["api", "--migrate"], env, tmp_path, log):
        wait_until(lambda: _ready(url), 90, "unfold api to be ready", log)
        with httpx.Client(base_url=url, timeout=60) as client:
            ds = upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]
            job = client.post("/v1/jobs", json={"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}}).json()
            model = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
        # A new connection per request: the kernel hands each to either process.
        for i in range(N):
            r = httpx.get(f"{url}/v1/models/{model}/users/u{i % 7}/recommendations", params={"k": 3})
            assert r.status_code == 200, r.text
        scrapes = [httpx.get(f"{url}/metrics").text for _ in range(8)]
    for text in scrapes:
        served = _sample(text, "unfold_http_request_seconds_count", route=ROUTE, status="200")
        assert served == N, text
        lookups = _sample(text, "unfold_model_cache_total") + _sample(text, "unfold_hot_path_answers_total")
        assert lookups >= N, text
    # The process counters read the same in every scrape, whichever process answered it.
    for name in ("unfold_model_cache_total", "unfold_hot_path_answers_total"):
        assert len({_sample(text, name) for text in scrapes}) == 1, name
    # Both processes answered: each writes its own files into the multiprocess folder.
    pids = {p.stem.rsplit("_", 1)[-1] for p in (tmp_path / "var" / "metrics").glob("histogram_*.db")}
    assert len(pids) == 2, pids
