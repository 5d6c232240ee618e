"""Small helpers the API and integration tests share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from app.job_status import FINISHED


def planted_csv(path: Path, n_users: int = 60, n_items: int = 40, per_user: int = 12, seed: int = 0) -> Path:
    """Two communities: users of group g only touch items of group g (a tiny, learnable file)."""
    rng = np.random.default_rng(seed)
    lines = ["user,item,weight"]
    half_u, half_i = n_users // 2, n_items // 2
    for u in range(n_users):
        g = u // half_u
        items = rng.choice(half_i, size=per_user, replace=False) + g * half_i
        lines += [f"u{u},i{i},{1 + rng.integers(0, 3)}" for i in items]
    path.write_text("\n".join(lines) + "\n")
    return path


def upload(client: Any, path: Path, **form: str) -> Any:
    with path.open("rb") as fh:
        return client.post("/v1/datasets", files={"file": (path.name, fh)}, data=form)


def wait_for_job(client: Any, job_id: str, timeout: float = 300.0, prefix: str = "") -> dict[str, Any]:
    """Poll a job until it reaches a final status."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"{prefix}/v1/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job.get('progress')}")
        time.sleep(0.2)


def metric_value(text: str, sample: str) -> float:
    """The value of one Prometheus sample line, e.g. 'unfold_jobs{status="queued"}'; fails if absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in /metrics")
