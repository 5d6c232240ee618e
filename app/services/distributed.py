"""A distributed job (spec `distributed.workers` N > 1): one model trained by N ranks on N workers.

Rank 0 is the job's own training task, on the worker that claimed the job: lease, heartbeat, checkpoints,
evaluation and publishing stay as for any job. It serves a torch.distributed store on a free port, writes
its address to the job's rendezvous row, sends N − 1 rank tasks to the rank queue and waits until every rank
joined (RanksMissing after the timeout: the job fails, it never hangs). Each fit of the pipeline then goes
through Coordinator.fit: the data are cut into shards balanced by nonzeros, each rank's shard is published
under a key of its own (a rank downloads only its part), the ranks are told over the group to fit, and rank 0
fits shard 0 with the job's callback, evaluator and checkpoints (app/recsys/sharded_wals.py).

A rank that dies (SIGKILL, lost host) fails the others' collectives: rank 0 raises RanksLost and the job
goes back to the queue (until max_attempts), so a fresh set of ranks resumes rank 0's last checkpoint.
A rank task of an attempt that is over (a redelivered message) finds the rendezvous row moved on and leaves.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import Job, Rendezvous, utcnow
from app.recsys.base import Callback, EmbeddingModel, Evaluator, Interrupt, StateCallback, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.sharded_wals import (
    broadcast_json,
    fit_sharded_wals,
    join,
    leave,
    make_shards,
    open_rendezvous,
    save_shard,
)
from app.recsys.wals import WALSConfig
from app.services.job_state import Lease
from app.storage import ArtifactStore, publishing

log = logging.getLogger(__name__)

SHARD_FILE = "shard.npz"
# How long a rank tries to reach rank 0's store: rank 0 publishes its address once the store listens, so a
# live attempt answers at once; an attempt that is over must not keep a worker busy.
CONNECT_SECONDS = 10.0

# send_ranks(job_id, attempt, rank): put one rank task on the rank queue.
SendRanks = Callable[[str, int, int], None]


class RanksMissing(Exception):
    """Not every rank joined within the timeout: the job does not start."""


class RanksLost(Exception):
    """A rank left mid-fit (its collectives failed): the job goes back to the queue for a fresh set of ranks."""


@dataclass(frozen=True)
class Ranks:
    """How rank 0 sends the other ranks, where they reach it, and how long joining and each collective may take."""

    send: SendRanks
    host: str
    join_seconds: float
    collective_seconds: float


def shard_key(job_id: str, attempt: int, fit: int, rank: int) -> str:
    return f"shards/{job_id}/{attempt}-{fit}-{rank}"


class Coordinator:
    """Rank 0's side of a distributed job: a Fit (app.services.algorithms.Fit) that trains on every rank."""

    def __init__(self, store: ArtifactStore, lease: Lease, world: int) -> None:
        self.store, self.lease, self.world = store, lease, world
        self.fits = 0

    def fit(
        self,
        train: Interactions,
        config: WALSConfig,
        callback: Callback | None = None,
        evaluator: Evaluator | None = None,
        *,
        resume: TrainingState | None = None,
        on_state: StateCallback | None = None,
        interrupt: Interrupt | None = None,
    ) -> EmbeddingModel:
        """fit_wals's answer, trained by all ranks: rank 0 here, the others on their shard files."""
        self.fits += 1
        shards = make_shards(train, self.world)
        keys = [shard_key(self.lease.job_id, self.lease.attempt, self.fits, rank) for rank in range(self.world)]
        try:
            for shard in shards[1:]:
                with publishing(self.store, keys[shard.rank]) as staged:
                    save_shard(shard, staged / SHARD_FILE)
            own = shards[0]
            del shards
            try:
                broadcast_json({"fit": self.fits, "config": asdict(config)})
                fitted = fit_sharded_wals(
                    own, config, callback, evaluator, resume=resume, on_state=on_state, interrupt=interrupt
                )
            except (RuntimeError, TimeoutError) as exc:  # collectives failing: a peer died or hung
                raise RanksLost(f"a rank left during the fit: {exc}") from exc
        finally:
            for key in keys[1:]:
                self.store.delete(key)
        assert fitted.model is not None  # rank 0 gets the gathered factors
        return fitted.model

    def finish(self) -> None:
        """Tell the ranks the job needs no more fits."""
        broadcast_json({"done": True})


def _publish_address(sessions: sessionmaker[Session], lease: Lease, address: str, world: int) -> None:
    with sessions() as session:
        row = session.get(Rendezvous, lease.job_id)
        if row is None:
            session.add(Rendezvous(job_id=lease.job_id, attempt=lease.attempt, address=address, world=world))
        else:
            row.attempt, row.address, row.world, row.created_at = lease.attempt, address, world, utcnow()
        session.commit()


@contextmanager
def coordinating(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    lease: Lease,
    world: int,
    settings: Ranks,
) -> Iterator[Coordinator]:
    """Rank 0 of `lease`'s attempt: meet the other ranks, yield the coordinator, then let them go."""
    rendezvous = open_rendezvous(settings.host, 0, 0, world, settings.join_seconds)
    _publish_address(sessions, lease, f"{settings.host}:{rendezvous.port}", world)
    for rank in range(1, world):
        settings.send(lease.job_id, lease.attempt, rank)
    try:
        join(rendezvous, 0, world, settings.join_seconds, collective_timeout=settings.collective_seconds)
    except TimeoutError as exc:
        raise RanksMissing(
            f"{exc}: a job with distributed.workers {world} needs {world} workers free at once, "
            "consuming the rank queue (docs/distributed.md)"
        ) from exc
    log.info("job %s: attempt %d runs on %d ranks", lease.job_id, lease.attempt, world)
    try:
        coordinator = Coordinator(store, lease, world)
        yield coordinator
        coordinator.finish()
    finally:
        leave()  # ranks still waiting for a command see the group close and leave too


def _current(sessions: sessionmaker[Session], job_id: str, attempt: int) -> Rendezvous | None:
    """The rendezvous row of this attempt while it runs, else None."""
    with sessions() as session:
        row = session.scalar(
            select(Rendezvous)
            .join(Job, Job.id == Rendezvous.job_id)
            .where(
                Rendezvous.job_id == job_id,
                Rendezvous.attempt == attempt,
                Job.status == "running",
                Job.attempts == attempt,
            )
        )
        if row is not None:
            session.expunge(row)
        return row


def serve_rank(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    job_id: str,
    attempt: int,
    rank: int,
    join_seconds: float,
    collective_seconds: float,
) -> str:
    """Be rank `rank` of a job's attempt until rank 0 says done; returns what happened (for logs and tests):
    "done", "stale" (the attempt is over), or "lost" (the group failed: rank 0 decides what the job does)."""
    row = _current(sessions, job_id, attempt)
    if row is None:
        log.info("job %s: rank %d of attempt %d is stale; leaving", job_id, rank, attempt)
        return "stale"
    host, _, port = row.address.rpartition(":")
    log.info("job %s: rank %d of %d (attempt %d) in process %d", job_id, rank, row.world, attempt, os.getpid())
    try:
        rendezvous = open_rendezvous(host, int(port), rank, row.world, CONNECT_SECONDS)
        join(rendezvous, rank, row.world, join_seconds, collective_timeout=collective_seconds)
    except (RuntimeError, TimeoutError, ValueError) as exc:  # the store is gone or full: a duplicate message
        log.warning("job %s: rank %d could not join attempt %d: %s", job_id, rank, attempt, exc)
        leave()
        return "stale"
    fits = 0
    try:
        while True:
            command: dict[str, Any] = broadcast_json(None)
            if command.get("done"):
                log.info("job %s: rank %d done after %d fit(s)", job_id, rank, fits)
                return "done"
            started = time.monotonic()
            # Given the file, the fit keeps only the shard's rows it needs.
            path = store.local_dir(shard_key(job_id, attempt, int(command["fit"]), rank)) / SHARD_FILE
            fit_sharded_wals(path, WALSConfig(**command["config"]))
            fits += 1
            log.info("job %s: rank %d fit %d in %.1f s", job_id, rank, fits, time.monotonic() - started)
    except (RuntimeError, TimeoutError) as exc:
        log.warning("job %s: rank %d left attempt %d: %s", job_id, rank, attempt, exc)
        return "lost"
    finally:
        leave()


def requeue(sessions: sessionmaker[Session], lease: Lease) -> bool:
    """Put a running job back in the queue (its checkpoint stays); False when the lease no longer holds."""
    with sessions() as session:
        result = session.execute(update(Job).where(lease.held()).values(status="queued", heartbeat_at=utcnow()))
        session.commit()
    return bool(getattr(result, "rowcount", 0))
