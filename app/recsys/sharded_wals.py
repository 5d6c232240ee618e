"""WALS on several processes (ranks) with torch.distributed: one model, each rank owning some rows.

The objective and the per-row solve are wals.py's. Users and items are each cut into `world` contiguous
ranges balanced by nonzeros (balanced_bounds); rank r owns users U[a_r:b_r] and items V[c_r:d_r] and holds
only those rows of the matrix (a Shard: its users' CSR over all items and its items' CSR over all users).

One half-step (users; items are symmetric), with V complete on every rank:

    U_r ← solve(A_u u = b_u for u in shard r)             wals._solve, the same CG kernel as fit_wals
    UᵀU = Σ_r U_rᵀU_r                                      all-reduce of a d × d matrix
    U   = [U_0; …; U_{R−1}]                                each owner broadcasts its rows (all-gather)

so the item half-step sees the same U and the same Gramian as the single process, and with the same seed
the factors match fit_wals's up to float rounding (the Gramian is summed in another order). Every rank
draws the same initial factors and keeps its rows. What crosses ranks per iteration is both factor matrices
once (n_users·d + n_items·d floats, sent by their owners) and two d × d Gramians; every rank holds both
complete factor matrices (its own rows are views, solved in place), which is where this design stops scaling
(docs/distributed.md).

Rank 0 runs the callback, evaluator and on_state on the complete factors; stopping (the callback's
answer, an interrupt() or an error on any rank) is agreed on by every rank at each half-step boundary, so no
rank waits in a collective for a peer that left. A peer that dies makes the collectives fail within the
process group's timeout.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch._C._distributed_c10d import Store, TCPStore

from app.recsys import wals_kernel
from app.recsys.base import (
    Callback,
    EmbeddingModel,
    Evaluator,
    Interrupt,
    StateCallback,
    TrainingState,
    check_resume,
    history_entry,
)
from app.recsys.device import pick_device
from app.recsys.interactions import Interactions
from app.recsys.wals import (
    BLOCKS_PER_THREAD,
    USE_KERNEL,
    WALSConfig,
    _blocks,
    _l2_penalty,
    _observed_scores,
    _prepare_rows,
    _RowPool,
    _Rows,
    _solve,
    init_factors,
)

SHARD_FORMAT = 1


def balanced_bounds(lengths: np.ndarray, parts: int) -> np.ndarray:
    """Cut rows with these nonzero counts into `parts` contiguous ranges of about equal nonzeros.

    Returns int64 bounds of length parts + 1 (range r is [bounds[r], bounds[r + 1]), possibly empty). A row
    also counts one for its d-vector update, so a run of empty rows is not all given to one range.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    lengths = np.asarray(lengths, dtype=np.int64)
    cost = np.cumsum(lengths + 1)
    total = int(cost[-1]) if cost.size else 0
    # Range r ends after the first row where the running cost reaches r/parts of the total.
    cuts = np.searchsorted(cost, total * np.arange(1, parts) / parts, side="left") + 1
    bounds = np.concatenate(([0], np.minimum(cuts, lengths.shape[0]), [lengths.shape[0]]))
    return np.maximum.accumulate(bounds).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Shard:
    """One rank's part of the matrix: its users' rows (over all items) and its items' rows (over all users)."""

    rank: int
    world: int
    user_bounds: np.ndarray  # int64 (world + 1,): rank r owns users [user_bounds[r], user_bounds[r + 1])
    item_bounds: np.ndarray  # int64 (world + 1,)
    users: Interactions  # n_users = this rank's users, n_items = every item
    items: Interactions  # n_users = this rank's items, n_items = every user
    nnz: int  # nonzeros of the whole matrix

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank must lie in [0, {self.world}), got {self.rank}")
        for name, bounds, part, other in (
            ("user", self.user_bounds, self.users, self.items.n_items),
            ("item", self.item_bounds, self.items, self.users.n_items),
        ):
            if bounds.shape != (self.world + 1,) or bounds[0] != 0 or np.any(np.diff(bounds) < 0):
                raise ValueError(f"{name}_bounds must be {self.world + 1} non-decreasing values from 0")
            if int(bounds[-1]) != other or part.n_users != int(bounds[self.rank + 1] - bounds[self.rank]):
                raise ValueError(f"the {name} rows do not match {name}_bounds")

    @property
    def n_users(self) -> int:
        return int(self.user_bounds[-1])

    @property
    def n_items(self) -> int:
        return int(self.item_bounds[-1])


def _row_range(matrix: Interactions, start: int, stop: int) -> Interactions:
    lo, hi = int(matrix.indptr[start]), int(matrix.indptr[stop])
    return Interactions(
        n_users=stop - start,
        n_items=matrix.n_items,
        indptr=matrix.indptr[start : stop + 1] - lo,
        indices=matrix.indices[lo:hi],
        weights=matrix.weights[lo:hi],
    )


def make_shards(train: Interactions, world: int) -> list[Shard]:
    """Cut `train` into the shards of `world` ranks (done once, where the whole matrix is at hand)."""
    user_bounds = balanced_bounds(train.user_counts(), world)
    t_indptr, t_indices, t_weights = wals_kernel.transpose(train.indptr, train.indices, train.weights, train.n_items)
    items = Interactions(
        n_users=train.n_items, n_items=train.n_users, indptr=t_indptr, indices=t_indices, weights=t_weights
    )
    item_bounds = balanced_bounds(items.user_counts(), world)
    return [
        Shard(
            rank=rank,
            world=world,
            user_bounds=user_bounds,
            item_bounds=item_bounds,
            users=_row_range(train, int(user_bounds[rank]), int(user_bounds[rank + 1])),
            items=_row_range(items, int(item_bounds[rank]), int(item_bounds[rank + 1])),
            nnz=train.nnz,
        )
        for rank in range(world)
    ]


def save_shard(shard: Shard, path: str | Path) -> None:
    """Write one shard as an .npz of plain arrays (no pickle); a rank reads only its own file."""
    np.savez(
        path,
        allow_pickle=False,
        header=np.array([SHARD_FORMAT, shard.rank, shard.world, shard.nnz], dtype=np.int64),
        user_bounds=shard.user_bounds,
        item_bounds=shard.item_bounds,
        user_indptr=shard.users.indptr,
        user_indices=shard.users.indices,
        user_weights=shard.users.weights,
        item_indptr=shard.items.indptr,
        item_indices=shard.items.indices,
        item_weights=shard.items.weights,
    )


@dataclass(frozen=True)
class _Layout:
    rank: int
    world: int
    nnz: int
    user_bounds: np.ndarray
    item_bounds: np.ndarray


def _layout(z: Any) -> _Layout:
    version, rank, world, nnz = (int(v) for v in z["header"])
    if version != SHARD_FORMAT:
        raise ValueError(f"shard format {version} is not supported (expected {SHARD_FORMAT})")
    return _Layout(rank, world, nnz, z["user_bounds"], z["item_bounds"])


def _side(z: Any, layout: _Layout, side: str) -> Interactions:
    """One side's rows of an open shard file: "user" (over all items) or "item" (over all users)."""
    own, other = (
        (layout.user_bounds, layout.item_bounds) if side == "user" else (layout.item_bounds, layout.user_bounds)
    )
    return Interactions(
        n_users=int(own[layout.rank + 1] - own[layout.rank]),
        n_items=int(other[-1]),
        indptr=z[f"{side}_indptr"],
        indices=z[f"{side}_indices"],
        weights=z[f"{side}_weights"],
    )


def load_shard(path: str | Path) -> Shard:
    """Read a shard written by save_shard."""
    with np.load(path, allow_pickle=False) as z:
        layout = _layout(z)
        users, items = _side(z, layout, "user"), _side(z, layout, "item")
    return Shard(layout.rank, layout.world, layout.user_bounds, layout.item_bounds, users, items, layout.nnz)


def open_rendezvous(host: str, port: int, rank: int, world: int, timeout: float) -> TCPStore:
    """The key-value store the ranks meet at: rank 0 serves it (port 0 picks a free port; read store.port and
    tell the others), the other ranks connect to rank 0's host and port."""
    return TCPStore(
        host,
        port,
        world,
        is_master=rank == 0,
        timeout=timedelta(seconds=timeout),
        wait_for_workers=False,
    )


def join(
    store: Store,
    rank: int,
    world: int,
    timeout: float,
    backend: str | None = None,
    collective_timeout: float | None = None,
) -> None:
    """Join the process group of `world` ranks through `store`; TimeoutError unless all joined within `timeout`.

    backend None picks NCCL when CUDA is available, else gloo. Collectives time out after `collective_timeout`
    seconds (default `timeout`): a peer that hangs fails the others then; a peer that dies closes its
    connections, which fails them at once.
    """
    deadline = time.monotonic() + timeout
    joined = store.add("unfold/joined", 1)
    while joined < world:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {joined} of {world} ranks joined within {timeout:g} s; the job does not start without all"
            )
        time.sleep(0.05)
        joined = store.add("unfold/joined", 0)
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    limit = timedelta(seconds=timeout if collective_timeout is None else collective_timeout)
    dist.init_process_group(chosen, store=store, rank=rank, world_size=world, timeout=limit)


def broadcast_json(message: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's message (JSON-able) on every rank of the joined group; rank 0 passes it, the others None."""
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    size = torch.zeros(1, dtype=torch.int64, device=device)
    if dist.get_rank() == 0:
        if message is None:
            raise ValueError("rank 0 must give the message it broadcasts")
        data = json.dumps(message).encode()
        size[0] = len(data)
        dist.broadcast(size, src=0)
        dist.broadcast(torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device), src=0)
        return message
    dist.broadcast(size, src=0)
    buffer = torch.empty(int(size[0]), dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=0)
    received: dict[str, Any] = json.loads(bytes(buffer.cpu().numpy()))
    return received


def leave() -> None:
    """Leave the process group joined by join() (a no-op when none is open)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class PeerStopped(RuntimeError):
    """Another rank stopped the fit (its interrupt or callback raised); the rank that raised says why."""


@dataclass(frozen=True, eq=False)
class ShardedFit:
    """What a rank gets back: rank 0 the model with the complete factors, every rank its traffic."""

    model: EmbeddingModel | None  # rank 0 only
    bytes_sent: int  # payload this rank handed to collectives during the fit
    iterations: int  # iterations run by this call (after a resumed step)


class _Ranks:
    """The collectives of one fit, counting the bytes this rank sends (ring all-reduce, owner broadcast)."""

    def __init__(self, rank: int, world: int, device: torch.device) -> None:
        self.rank, self.world, self.device = rank, world, device
        self.bytes_sent = 0

    def gramian(self, X: torch.Tensor) -> torch.Tensor:
        """Σ over ranks of XᵀX for this rank's rows X (float32, as fit_wals's Y.T @ Y)."""
        G = X.T @ X
        if self.world > 1:
            dist.all_reduce(G)
            self.bytes_sent += 2 * (self.world - 1) * G.numel() * G.element_size() // self.world
        return G

    def all_gather(self, full: torch.Tensor, bounds: np.ndarray) -> None:
        """Complete `full` in place: each owner broadcasts its rows [bounds[r], bounds[r + 1]) to the others."""
        for owner in range(self.world):
            a, b = int(bounds[owner]), int(bounds[owner + 1])
            if self.world == 1 or a == b:
                continue
            dist.broadcast(full[a:b], src=owner)
            if owner == self.rank:
                self.bytes_sent += (self.world - 1) * (b - a) * full.shape[1] * full.element_size()

    def start(self, first: int, resumed: bool) -> tuple[int, bool]:
        """Rank 0's first step and whether it resumes, on every rank."""
        if self.world == 1:
            return first, resumed
        t = torch.tensor([first, int(resumed)], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return int(t[0]), bool(t[1])

    def broadcast(self, X: torch.Tensor) -> None:
        """Rank 0's X, in place on every rank."""
        if self.world > 1:
            dist.broadcast(X, src=0)
            if self.rank == 0:
                self.bytes_sent += (self.world - 1) * X.numel() * X.element_size()

    def sums(self, values: list[float]) -> list[float]:
        """Σ over ranks of each value (float64)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(t)
            self.bytes_sent += 2 * (self.world - 1) * t.numel() * 8 // self.world
        return [float(v) for v in t.cpu()]

    def agree(self, stop: bool, failed: bool) -> tuple[bool, bool]:
        """Whether any rank asks to stop, and whether any rank failed."""
        if self.world == 1:
            return stop, failed
        t = torch.tensor([int(stop), int(failed)], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        self.bytes_sent += 2 * (self.world - 1) * 8 // self.world
        return bool(t[0]), bool(t[1])


def _checked(ranks: _Ranks, interrupt: Interrupt | None) -> None:
    """Run this rank's interrupt() and agree with the others: every rank raises if any rank's raised."""
    error: BaseException | None = None
    if interrupt is not None:
        try:
            interrupt()
        except BaseException as exc:  # re-raised below, after the peers have been told
            error = exc
    _, failed = ranks.agree(False, error is not None)
    if error is not None:
        raise error
    if failed:
        raise PeerStopped("another rank stopped the fit")


def _observed_part(rows: _Rows, X: torch.Tensor, Y: torch.Tensor, w0: float) -> float:
    """Σ over the rows' nonzeros of c(1 − s)² − w0·s², s = x·y (the objective's observed part)."""
    if X.device.type == "cpu" and USE_KERNEL:
        return wals_kernel.loss(
            rows.crow.numpy(), rows.col.numpy(), rows.c_minus_w0.numpy(), w0, X.contiguous().numpy(), Y.numpy()
        )
    s = _observed_scores(rows, X, Y).values()
    linear = rows.n_nnz - 2.0 * float(s.sum(dtype=torch.float64))
    s.neg_().add_(1.0).square_().mul_(rows.c_minus_w0)
    return float(s.sum(dtype=torch.float64)) + w0 * linear


def fit_sharded_wals(
    shard: Shard | str | Path,
    config: WALSConfig,
    callback: Callback | None = None,
    evaluator: Evaluator | None = None,
    *,
    resume: TrainingState | None = None,
    on_state: StateCallback | None = None,
    interrupt: Interrupt | None = None,
) -> ShardedFit:
    """Train WALS as the shard's rank in the joined process group (join(); one rank needs no group).

    The same model as fit_wals on the whole matrix with the same config. callback, evaluator and on_state run
    on rank 0 only (ValueError if given elsewhere); interrupt may be given on any rank. `resume` (a state
    from on_state: the complete factors) is read on rank 0 only, which sends the factors to the others.
    `shard` may be the path of a shard file: the fit then loads it and keeps only what it needs (the raw
    weights go once they are confidences), which is what a rank that owns its shard file should pass.
    """
    device = pick_device(config.device)
    if isinstance(shard, str | Path):
        # One side at a time, each side's raw weights freed once they are confidences: the prepared rows
        # share only the indices with what was read.
        with np.load(shard, allow_pickle=False) as z:
            layout = _layout(z)
            users = _prepare_rows(_side(z, layout, "user"), config, device)
            items = _prepare_rows(_side(z, layout, "item"), config, device)
    else:
        layout = _Layout(shard.rank, shard.world, shard.nnz, shard.user_bounds, shard.item_bounds)
        users, items = _prepare_rows(shard.users, config, device), _prepare_rows(shard.items, config, device)
    rank, world, nnz, user_bounds, item_bounds = (layout.rank, layout.world, layout.nnz, layout.user_bounds,
                                                  layout.item_bounds)  # fmt: skip
    n_users, n_items = int(user_bounds[-1]), int(item_bounds[-1])
    if rank != 0 and (callback is not None or evaluator is not None or on_state is not None):
        raise ValueError("callback, evaluator and on_state run on rank 0 only")
    if world > 1 and (not dist.is_initialized() or dist.get_world_size() != world):
        raise ValueError(f"shard of {world} ranks needs a joined process group of that size (join())")
    ranks = _Ranks(rank, world, device)
    ua, ub = int(user_bounds[rank]), int(user_bounds[rank + 1])
    ia, ib = int(item_bounds[rank]), int(item_bounds[rank + 1])
    history: list[dict[str, Any]] = []
    first, offset = 1, 0.0
    if rank == 0 and resume is not None:
        shapes = {"user_factors": (n_users, config.dim), "item_factors": (n_items, config.dim)}
        check_resume(resume, "wals", shapes)
        first, offset = resume.step + 1, float(resume.meta.get("elapsed", 0.0))
        history = [dict(h) for h in resume.meta.get("history", [])]
    # Rank 0's resume decides for all (the others need not read the checkpoint): it sends them the factors.
    first, resumed = ranks.start(first, rank == 0 and resume is not None)
    if not resumed:
        # Every rank draws both complete matrices as fit_wals does: the same start.
        generator = torch.Generator().manual_seed(config.seed)
        V = init_factors(n_items, config, generator).to(device)
        U = init_factors(n_users, config, generator).to(device)
    else:
        U, V = (
            (
                torch.tensor(resume.arrays[name], dtype=torch.float32, device=device)
                for name in ("user_factors", "item_factors")
            )
            if rank == 0 and resume is not None
            else (torch.empty(n, config.dim, dtype=torch.float32, device=device) for n in (n_users, n_items))
        )
        ranks.broadcast(U)
        ranks.broadcast(V)
    # Both complete matrices stay on every rank; a rank solves its own rows in place (views) and the gathers
    # fill in the others' rows, so no second copy of a factor matrix is ever made.
    U_own, V_own = U[ua:ub], V[ia:ib]
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    wals_kernel.set_threads(threads)
    user_blocks = _blocks(users, threads * BLOCKS_PER_THREAD, config.dim)
    item_blocks = _blocks(items, threads * BLOCKS_PER_THREAD, config.dim)
    w0 = config.unobserved_weight
    VtV = ranks.gramian(V_own)
    iterations = 0
    start = time.perf_counter()
    with _RowPool(threads).running() as pool:
        for step in range(first, config.iterations + 1):
            _checked(ranks, interrupt)
            _into(U_own, _solve(users, user_blocks, V, U_own, config, pool, gramian=VtV))
            UtU = ranks.gramian(U_own)
            ranks.all_gather(U, user_bounds)
            _checked(ranks, interrupt)
            observed: list[float] = []
            _into(V_own, _solve(items, item_blocks, U, V_own, config, pool, observed, gramian=UtU))
            observed_sum = observed[0] if observed else _observed_part(items, V_own, U, w0)
            VtV = ranks.gramian(V_own)
            ranks.all_gather(V, item_bounds)
            # Block by block, as wals._objective does: the norms are taken in float64, one block's copy at a time.
            penalty = sum(
                float(_l2_penalty(b.rows, own[b.start : b.stop], config))
                for blocks, own in ((user_blocks, U_own), (item_blocks, V_own))
                for b in blocks
            )
            observed_sum, penalty = ranks.sums([observed_sum, penalty])
            total = observed_sum + w0 * float((UtU.double() * VtV.double()).sum()) + penalty
            loss = total / max(nnz, 1)
            iterations += 1
            stop, error = False, None
            if rank == 0:
                try:
                    stop = _report(step, loss, offset + time.perf_counter() - start, U, V, history,
                                   callback, evaluator, on_state)  # fmt: skip
                except BaseException as exc:  # re-raised after the peers have been told
                    error = exc
            stop, failed = ranks.agree(stop, error is not None)
            if error is not None:
                raise error
            if failed:
                raise PeerStopped("rank 0 stopped the fit")
            if stop:
                break
    model = None
    if rank == 0:
        model = EmbeddingModel(
            user_factors=np.ascontiguousarray(U.cpu().numpy(), dtype=np.float32),
            item_factors=np.ascontiguousarray(V.cpu().numpy(), dtype=np.float32),
            algorithm="wals",
            config=asdict(config),
            history=history,
        )
    return ShardedFit(model=model, bytes_sent=ranks.bytes_sent, iterations=iterations)


def _into(own: torch.Tensor, solved: torch.Tensor) -> None:
    """Make `solved` the rows of `own` (the compiled CPU loop already solved them in place)."""
    if solved.data_ptr() != own.data_ptr():
        own.copy_(solved)


def _report(
    step: int,
    loss: float,
    elapsed: float,
    U: torch.Tensor,
    V: torch.Tensor,
    history: list[dict[str, Any]],
    callback: Callback | None,
    evaluator: Evaluator | None,
    on_state: StateCallback | None,
) -> bool:
    """Rank 0's end of an iteration, as in fit_wals; True when the callback asks to stop."""
    metrics: dict[str, float] = {}
    if evaluator is not None:
        metrics = evaluator(U.cpu().numpy().copy(), V.cpu().numpy().copy())
    history.append(history_entry(step, loss, elapsed, metrics))
    if callback is not None and callback(step, elapsed, loss, metrics):
        return True
    if on_state is not None:
        factors, done = (U, V), len(history)

        def capture() -> TrainingState:
            arrays = {"user_factors": factors[0].cpu().numpy().copy(), "item_factors": factors[1].cpu().numpy().copy()}
            meta = {"elapsed": elapsed, "history": [dict(h) for h in history[:done]]}
            return TrainingState("wals", step, arrays, meta)

        on_state(step, capture)
    return False
