"""The body of one rank in tests/recsys/test_sharded_wals.py, run in a process of its own (spawn).

Rank 0 publishes its rendezvous port in a file, as the service publishes it in the database.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.recsys.base import TrainingState
from app.recsys.sharded_wals import fit_sharded_wals, join, leave, load_shard, open_rendezvous
from app.recsys.wals import WALSConfig


def _port(address_file: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not address_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("rank 0 published no address")
        time.sleep(0.05)
    return int(address_file.read_text())


def rank_main(shard_path: str, address_file: str, out: str, config: dict[str, Any], options: dict[str, Any]) -> None:
    """Load the shard, meet the other ranks, fit, write what came out (rank 0: the factors)."""
    torch.set_num_threads(1)
    shard = load_shard(shard_path)
    timeout = float(options.get("timeout", 30.0))
    address = Path(address_file)
    if shard.rank == 0:
        store = open_rendezvous("127.0.0.1", 0, 0, shard.world, timeout)
        staged = address.with_suffix(".tmp")
        staged.write_text(str(store.port))
        staged.rename(address)
    else:
        store = open_rendezvous("127.0.0.1", _port(address, timeout), shard.rank, shard.world, timeout)
    try:
        join(store, shard.rank, shard.world, timeout)
    except TimeoutError as exc:
        Path(out).write_text(json.dumps({"error": str(exc)}))
        return
    die_at = options.get("die_at")  # (rank, n): that rank kills itself (SIGKILL) at its n-th interrupt() check
    calls = 0

    def interrupt() -> None:
        nonlocal calls
        calls += 1
        if die_at is not None and shard.rank == die_at[0] and calls == die_at[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    state_file = options.get("state_file")  # rank 0 checkpoints every step there, or resumes from it

    def on_state(step: int, capture: Callable[[], TrainingState]) -> None:
        state = capture()
        arrays = state.arrays
        np.savez(str(state_file), step=np.array(step), U=arrays["user_factors"], V=arrays["item_factors"])

    resume = None
    if shard.rank == 0 and options.get("resume"):
        with np.load(str(state_file)) as z:
            arrays = {"user_factors": z["U"], "item_factors": z["V"]}
            resume = TrainingState("wals", int(z["step"]), arrays, {})
    started = time.monotonic()
    try:
        fit = fit_sharded_wals(
            shard_path if options.get("by_path") else shard,
            WALSConfig(**config),
            on_state=on_state if shard.rank == 0 and state_file else None,
            resume=resume,
            interrupt=interrupt,
        )
    except Exception as exc:
        Path(out).write_text(
            json.dumps({"failed": type(exc).__name__, "message": str(exc), "after": time.monotonic() - started})
        )
        return
    finally:
        leave()
    if fit.model is not None:
        np.savez(out + ".npz", U=fit.model.user_factors, V=fit.model.item_factors,
                 loss=np.array([h["loss"] for h in fit.model.history]))  # fmt: skip
    Path(out).write_text(json.dumps({"bytes_sent": fit.bytes_sent, "iterations": fit.iterations}))
