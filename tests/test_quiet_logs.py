"""A first run's log holds no lines that look like errors but are not: known notices are dropped or explained."""

from __future__ import annotations

import subprocess
import sys

# Runs in a fresh interpreter: faiss logs its loader notices only on its first import, and the
# logging configuration is the one `unfold api` / `unfold worker` install.
SCRIPT = """
import logging, logging.config, os
from app.cli import log_config, _explain_root
logging.config.dictConfig(log_config("text"))
import faiss  # its loader reports the SIMD builds the wheel lacks
kombu = logging.getLogger("kombu.connection")
kombu.warning("No hostname was supplied. Reverting to default 'localhost'")
kombu.warning("a kombu warning that matters")
os.getuid = os.geteuid = lambda: 0  # as a worker started by root (make run in a container, a VM)
_explain_root()
from celery.platforms import check_privileges
check_privileges({"json"})
"""


def test_known_notices_are_dropped_and_root_is_explained_once():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    log = run.stderr
    assert "a kombu warning that matters" in log  # other warnings still come through
    assert "No hostname was supplied" not in log, log
    assert "faiss.loader" not in log and "ModuleNotFoundError" not in log, log
    assert "superuser privileges" not in log and "SecurityWarning" not in log, log
    assert "running as root: tasks are JSON only" in log, log
