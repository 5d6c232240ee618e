"""A throwaway Unfold inside this process: the real API on a free loopback port, training in a thread.

Used by `unfold demo` when no server answers at UNFOLD_URL, and by the command-line tests. The
client talks to it over real HTTP (streamed upload, server-sent events), so nothing here is a
shortcut around the code paths a deployed server runs; only the storage is a temporary SQLite
database and folder, and the queue is a single training thread.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from app.config import Settings

START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class EmbeddedServer:
    url: str
    app: FastAPI
    settings: Settings


def embedded_settings(var_dir: Path) -> Settings:
    """Settings confined to var_dir, whatever UNFOLD_* variables the shell has set."""
    # Demo-sized training gains nothing from more threads, and on cores other processes are busy
    # with, torch's OpenMP threads wait on each other: measured 8 s with one thread against 75 s
    # with two for the demo's two jobs. UNFOLD_TORCH_THREADS still decides when it is set.
    settings = Settings(
        var_dir=var_dir,
        database_url=f"sqlite:///{(var_dir / 'unfold.db').resolve()}",
        broker_url="filesystem://",
        artifact_root=str((var_dir / "artifacts").resolve()),
        task_always_eager=True,
        require_auth=False,  # a fresh database has no keys: this process is its only client
    )
    return settings if os.environ.get("UNFOLD_TORCH_THREADS") else settings.model_copy(update={"torch_threads": 1})


@contextmanager
def embedded_server(var_dir: Path | None = None) -> Iterator[EmbeddedServer]:
    """Serve a fresh Unfold on 127.0.0.1:<free port> until the block exits."""
    if var_dir is not None:
        yield from _serve(var_dir)
        return
    with tempfile.TemporaryDirectory(prefix="unfold-") as tmp:
        yield from _serve(Path(tmp))


def _serve(var_dir: Path) -> Iterator[EmbeddedServer]:
    import uvicorn

    from app.api.app import create_app
    from app.migrate import upgrade
    from workers.tasks import train_job

    settings = embedded_settings(var_dir)
    upgrade(settings.resolved_database_url)
    app = create_app(settings)
    # One training thread is the queue: POST /v1/jobs answers at once and the job runs behind
    # it, so progress can be followed live, as with a real worker.
    trainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unfold-train")
    app.state.enqueue = lambda job_id: trainer.submit(train_job, settings, job_id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="unfold-api", daemon=True)
    # A failed job is reported through the API (job.error); its traceback would only clutter
    # the terminal of a client-side command.
    training_log = logging.getLogger("app.services.training")
    level = training_log.level
    training_log.setLevel(logging.CRITICAL)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded Unfold API did not start")
            time.sleep(0.02)
        yield EmbeddedServer(url=f"http://127.0.0.1:{port}", app=app, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        trainer.shutdown(wait=True, cancel_futures=True)
        training_log.setLevel(level)
