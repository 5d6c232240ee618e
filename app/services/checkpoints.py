"""Checkpoints of running jobs in the artifact store, so a job whose worker died goes on where it was.

A checkpoint lives under `jobs/<job id>/checkpoint` and is published like any artifact (staged, then
renamed into place or switched by the S3 marker), so a reader finds the previous complete one or the
new one, never half of one. Files (no pickle anywhere):

    state.npz          the core's TrainingState arrays (factors, optimiser state, RNG state as uint8)
    checkpoint.json    format, fingerprint, phase ("fit" | "refit"), the job's history so far, the
                       early-stopping bookkeeping, a finished fit phase's metrics, the core's step and meta

The fingerprint (spec + dataset checksum) keeps a checkpoint from resuming anything but the job that
wrote it. Writes are throttled (`checkpoint_seconds`); the job deletes its checkpoint when it ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.recsys.base import TrainingState
from app.storage import ArtifactStore, publishing

log = logging.getLogger(__name__)

FORMAT = 1
ARRAYS = "state.npz"
META = "checkpoint.json"
PHASES = ("fit", "refit")


def checkpoint_key(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoint"


def fingerprint(spec: dict[str, Any], dataset_checksum: str) -> str:
    """What a checkpoint must match to be resumed: the job's spec and its data."""
    payload = json.dumps({"spec": spec, "data": dataset_checksum}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """Where a job stood: its phase, the core's state in it (None: the phase has not started yet),
    the job's history, early stopping's best so far and, in the refit phase, the fit phase's results."""

    phase: str
    state: TrainingState | None
    history: list[dict[str, Any]] = field(default_factory=list)
    early_stopping: dict[str, Any] = field(default_factory=dict)
    fit_result: dict[str, Any] | None = None

    @property
    def step(self) -> int:
        return self.state.step if self.state is not None else 0


def save(store: ArtifactStore, job_id: str, job_fingerprint: str, checkpoint: Checkpoint) -> None:
    """Publish a checkpoint whole (replacing the previous one)."""
    if checkpoint.phase not in PHASES:
        raise ValueError(f"unknown checkpoint phase {checkpoint.phase!r}")
    with publishing(store, checkpoint_key(job_id)) as staged:
        state = checkpoint.state
        meta: dict[str, Any] = {
            "format": FORMAT,
            "fingerprint": job_fingerprint,
            "phase": checkpoint.phase,
            "history": checkpoint.history,
            "early_stopping": checkpoint.early_stopping,
            "fit_result": checkpoint.fit_result,
            "state": None,
        }
        if state is not None:
            meta["state"] = {"algorithm": state.algorithm, "step": state.step, "meta": state.meta}
            for name, array in state.arrays.items():
                if array.dtype == object:
                    raise ValueError(f"checkpoint array {name!r} has dtype object (it would need pickle)")
            np.savez(staged / ARRAYS, allow_pickle=False, **state.arrays)
        (staged / META).write_text(json.dumps(meta))


def load(store: ArtifactStore, job_id: str, job_fingerprint: str) -> Checkpoint | None:
    """The job's checkpoint, or None when there is none or it cannot be used (logged: the job starts over)."""
    key = checkpoint_key(job_id)
    try:
        directory = store.local_dir(key)
    except FileNotFoundError:
        return None
    try:
        meta = json.loads((directory / META).read_text())
        if (
            meta.get("format") != FORMAT
            or meta.get("fingerprint") != job_fingerprint
            or meta.get("phase") not in PHASES
        ):
            log.warning("job %s: checkpoint from another format, spec or dataset; starting over", job_id)
            return None
        state = None
        if meta["state"] is not None:
            with np.load(directory / ARRAYS, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            s = meta["state"]
            state = TrainingState(s["algorithm"], int(s["step"]), arrays, s["meta"])
        return Checkpoint(
            phase=meta["phase"],
            state=state,
            history=list(meta.get("history") or []),
            early_stopping=dict(meta.get("early_stopping") or {}),
            fit_result=meta.get("fit_result"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("job %s: unreadable checkpoint; starting over", job_id, exc_info=True)
        return None


def delete(store: ArtifactStore, job_id: str) -> None:
    """Remove the job's checkpoint (idempotent). A store that fails here is logged, not raised: a job's
    outcome never depends on tidying up (a leftover checkpoint only costs space)."""
    try:
        store.delete(checkpoint_key(job_id))
    except Exception:
        log.warning("job %s: could not delete its checkpoint", job_id, exc_info=True)


class Checkpointer:
    """One attempt's checkpoints: what it resumed from, and saves at most every `every` seconds."""

    def __init__(
        self,
        store: ArtifactStore,
        job_id: str,
        job_fingerprint: str,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.job_id, self.job_fingerprint, self.every, self.clock = (
            store,
            job_id,
            job_fingerprint,
            every,
            clock,
        )
        self.resumed = load(store, job_id, job_fingerprint)
        self.fit_result: dict[str, Any] | None = self.resumed.fit_result if self.resumed is not None else None
        self._last = clock()
        self.saved = 0

    def resume_state(self, phase: str) -> Checkpoint | None:
        """The checkpoint to resume `phase` from, if this attempt started inside that phase."""
        if self.resumed is not None and self.resumed.phase == phase:
            return self.resumed
        return None

    def save(self, checkpoint: Checkpoint) -> bool:
        """Save now (a phase boundary, or a due step); False when the store failed (logged: training goes on,
        a checkpoint is a shortcut for a later attempt, not a condition of this one)."""
        started = self.clock()
        try:
            save(self.store, self.job_id, self.job_fingerprint, checkpoint)
        except Exception:
            log.warning("job %s: could not save a checkpoint; training goes on", self.job_id, exc_info=True)
            return False
        finally:
            self._last = self.clock()
        self.saved += 1
        log.debug(
            "job %s: checkpoint %s/%d in %.3f s", self.job_id, checkpoint.phase, checkpoint.step, self._last - started
        )
        return True

    def due(self) -> bool:
        return self.clock() - self._last >= self.every

    def delete(self) -> None:
        delete(self.store, self.job_id)
