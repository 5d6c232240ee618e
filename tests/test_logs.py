"""Process logging: JSON lines carry the job id; uvicorn's loggers go through the same handler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(log_format: str) -> list[str]:
    # A fresh interpreter, so configuring the root logger does not leak into the test session.
    code = (
        "import logging\n"
        "from app import logs\n"
        f"logs.configure({log_format!r})\n"
        "log = logging.getLogger('app.services.training')\n"
        "log.info('outside')\n"
        "with logs.job_context('job_123'):\n"
        "    log.info('job %s succeeded', 'job_123')\n"
        "    try:\n"
        "        raise ValueError('boom')\n"
        "    except ValueError:\n"
        "        log.exception('failed')\n"
        "logging.getLogger('uvicorn.error').info('Started server process')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stderr.strip().splitlines()


def test_json_lines_carry_the_job_id_and_exceptions():
    lines = _run("json")
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert [e["message"] for e in entries] == ["outside", "job job_123 succeeded", "failed", "Started server process"]
    assert "job_id" not in entries[0] and "job_id" not in entries[3]
    assert entries[1]["job_id"] == entries[2]["job_id"] == "job_123"
    assert entries[1]["level"] == "INFO" and entries[1]["logger"] == "app.services.training"
    assert "ValueError: boom" in entries[2]["exception"]
    assert entries[3]["logger"] == "uvicorn.error"  # uvicorn's records come through the same handler


def test_text_lines_name_the_job():
    lines = _run("text")
    assert any(line.endswith("app.services.training [job_123]: job job_123 succeeded") for line in lines)
    assert any(line.endswith("app.services.training: outside") for line in lines)
