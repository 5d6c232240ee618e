"""Weighted alternating least squares (implicit-feedback matrix factorisation) in pure torch.

Objective, with confidences c_ui (see confidence.py), unobserved weight w0 and L2 weight λ:

    L = Σ_observed c_ui (1 − u·v)² + w0 Σ_unobserved (u·v)² + λ(‖U‖² + ‖V‖²)

Fixing V, the optimal row u of U solves (the Gramian trick: w0·VᵀV is shared by every row, and only the
row's observed items I_u add a correction):

    A_u u = b_u,   A_u = w0·VᵀV + Σ_{i∈I_u} (c_ui − w0) v_i v_iᵀ + λI,   b_u = Σ_{i∈I_u} c_ui v_i

and symmetrically for items with U fixed. One iteration solves all users, then all items.

With l2_scaling="frequency" (Rendle et al., "Revisiting the Performance of iALS on Item Recommendation
Benchmarks", RecSys 2022) each row has its own weight λ_u = λ·(|I_u| + w0·n_items)^ν in place of λ — the
regulariser grows with the loss mass the row carries, so one λ suits rare and frequent rows alike and keeps
working as the dimension grows; λ then takes small values (1e-3 … 1e-1 rather than 1 … 100). The dense
matrix is never built: Σ_all (u·v)² = trace((UᵀU)(VᵀV)), and per-nonzero products are sparse kernels.

Solvers: "cg" runs `cg_steps` conjugate-gradient steps on every row at once, warm-started from the
current factors (as the `implicit` library does), with matrix-vector products
A_u x_u = x_u·(w0·VᵀV + λI) + Σ_{i∈I_u} (c_ui − w0)(x_u·v_i) v_i from sparse kernels (a sampled dense-dense
product, then a CSR × dense product); "cholesky" solves every A_u exactly in padded batches (cholesky.py).

On the CPU the CG half-step (and the objective's observed part) runs as one compiled loop over rows in
wals_kernel.py; the torch version here serves CUDA and the Cholesky solver. Either way, parallelism on the
CPU is over rows, not inside kernels: rows are independent within a half-step, so threads meet once per
half-step — as implicit's OpenMP loop over rows does (the torch paths run row blocks on Python threads with
torch single-threaded; kernels release the GIL). torch's own intra-op threads instead meet after every
kernel, dozens of times per half-step, and on cores shared with any other busy process one descheduled
thread stalls every meeting (ml-1m, dim 64, one other busy process: 1.38 s per iteration with 2 intra-op
threads, 0.135 s with 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np
import torch

from app.recsys import cholesky, wals_kernel
from app.recsys import wals_defaults as defaults
from app.recsys.base import (
    Callback,
    EmbeddingModel,
    Evaluator,
    Interrupt,
    StateCallback,
    TrainingState,
    check_resume,
)
from app.recsys.confidence import confidence, validate_confidence
from app.recsys.device import pick_device
from app.recsys.interactions import Interactions
from app.recsys.loop import run_steps
from app.recsys.regularization import row_l2

SOLVERS = ("cg", "cholesky")
# CG on the CPU runs the compiled row loop of wals_kernel; the torch version (used on CUDA) is kept in
# step with it by tests that run both.
USE_KERNEL = True
L2_SCALINGS = ("none", "frequency")


@dataclass(frozen=True)
class WALSConfig:
    """Hyper-parameters of fit_wals; the defaults are the recommended settings of wals_defaults.py.

    λ's scale depends on l2_scaling (about 0.01 with "frequency", 100 with "none"): a config that changes the
    scaling names λ and w0 too (wals_defaults.L2 and UNOBSERVED_WEIGHT hold the recommended pairs). The service
    lowers an omitted λ further from the data (wals_defaults.capped_l2). init_scale None means a normal init
    with standard deviation 1/sqrt(dim).
    """

    dim: int = 64
    iterations: int = defaults.ITERATIONS
    l2: float = defaults.L2[defaults.L2_SCALING]
    unobserved_weight: float = defaults.UNOBSERVED_WEIGHT[defaults.L2_SCALING]
    # "none": λ for every row; "frequency": λ·(|I_u| + w0·n_items)^l2_exponent per row (see the module doc).
    l2_scaling: str = defaults.L2_SCALING
    l2_exponent: float = defaults.L2_EXPONENT
    confidence: str = defaults.CONFIDENCE  # "log" | "linear"
    alpha: float = defaults.ALPHA
    eps: float = defaults.EPS
    solver: str = defaults.SOLVER  # "cg" | "cholesky"
    cg_steps: int = defaults.CG_STEPS
    seed: int = 0
    init_scale: float | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.l2 >= 0.0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")
        if self.l2_scaling not in L2_SCALINGS:
            raise ValueError(f"l2_scaling must be one of {', '.join(L2_SCALINGS)}, got {self.l2_scaling!r}")
        if not 0.0 <= self.l2_exponent <= 2.0:
            raise ValueError(f"l2_exponent must be in [0, 2], got {self.l2_exponent}")
        if not self.unobserved_weight >= 0.0:
            raise ValueError(f"unobserved_weight must be >= 0, got {self.unobserved_weight}")
        validate_confidence(self.confidence, self.alpha, self.eps)
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.cg_steps < 1:
            raise ValueError(f"cg_steps must be >= 1, got {self.cg_steps}")
        if self.init_scale is not None and not self.init_scale > 0.0:
            raise ValueError(f"init_scale must be > 0 or None, got {self.init_scale}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f'device must be "auto", "cpu" or "cuda", got {self.device!r}')


@dataclass(frozen=True, eq=False)
class _Rows:
    """One side of the problem on the device: the CSR pattern with c_ui and c_ui − w0 as values."""

    n_rows: int
    n_cols: int
    crow: torch.Tensor  # (n_rows + 1,), int32 on the CPU, int64 on CUDA
    col: torch.Tensor  # (nnz,), same dtype as crow
    # Only c_ui − w0 is kept per nonzero (c_ui = it + w0): at 10M interactions a second array is 40 MB a side.
    c_minus_w0: torch.Tensor  # float32 c_ui − w0 per nonzero
    w0: float
    lengths: torch.Tensor  # int64 nonzeros per row
    l2: torch.Tensor | None  # float32 λ_u per row with frequency scaling; None: the scalar λ for all rows
    plan: cholesky.Plan | None  # padded chunks for the "cholesky" solver, None for "cg"

    @property
    def n_nnz(self) -> int:
        return int(self.col.shape[0])

    def block(self, start: int, stop: int) -> _Rows:
        """Rows [start, stop) as their own CSR (views of the column and value arrays)."""
        lo, hi = int(self.crow[start]), int(self.crow[stop])
        return _Rows(
            n_rows=stop - start,
            n_cols=self.n_cols,
            crow=self.crow[start : stop + 1] - lo,
            col=self.col[lo:hi],
            c_minus_w0=self.c_minus_w0[lo:hi],
            w0=self.w0,
            lengths=self.lengths[start:stop],
            l2=None if self.l2 is None else self.l2[start:stop],
            plan=None,
        )

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """Return a sparse CSR tensor with this pattern and the given values."""
        # torch warns on every CSR construction that sparse CSR is "beta"; the two kernels used here
        # (sampled_addmm and CSR @ dense) are checked against dense solves in tests/recsys/test_wals.py.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.crow, self.col, values, size=(self.n_rows, self.n_cols), check_invariants=False
            )


def _c_minus_w0(rows: Interactions, config: WALSConfig) -> np.ndarray:
    c = confidence(rows.weights, config.confidence, config.alpha, config.eps)
    c -= np.float32(config.unobserved_weight)  # in place: c itself is not kept
    return c


def _prepare_rows(rows: Interactions, config: WALSConfig, device: torch.device, with_plan: bool = True) -> _Rows:
    """One side (the rows of `rows`) on the device."""
    values = _c_minus_w0(rows, config)
    return _side(rows.n_users, rows.n_items, rows.indptr, rows.indices, values, config, device, with_plan)


def _prepare(
    train: Interactions, config: WALSConfig, device: torch.device, with_plan: bool = True
) -> tuple[_Rows, _Rows]:
    """Both sides on the device (users, items); with_plan also plans the Cholesky chunks when that solver is chosen."""
    c_minus_w0 = _c_minus_w0(train, config)
    # The item side is the transpose of the user side's pattern and values, built without temporaries.
    t_indptr, t_indices, t_values = wals_kernel.transpose(train.indptr, train.indices, c_minus_w0, train.n_items)
    users = _side(train.n_users, train.n_items, train.indptr, train.indices, c_minus_w0, config, device, with_plan)
    items = _side(train.n_items, train.n_users, t_indptr, t_indices, t_values, config, device, with_plan)
    return users, items


def _side(
    n_rows: int,
    n_cols: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    c_minus_w0: np.ndarray,
    config: WALSConfig,
    device: torch.device,
    with_plan: bool,
) -> _Rows:
    """One side as a _Rows: int32 indices on the CPU shared with the arrays given, not copied."""
    plan = None
    if with_plan and config.solver == "cholesky":
        pattern = Interactions(n_users=n_rows, n_items=n_cols, indptr=indptr, indices=indices, weights=c_minus_w0)
        plan = cholesky.plan(pattern, c_minus_w0, config.dim, device)
    lengths = np.diff(indptr)
    # On the CPU the indices stay int32 (10M interactions: 64 MB a side less than int64); torch's CPU sparse
    # kernels take int32 at the same speed. CUDA keeps int64.
    index_dtype = np.int32 if device.type == "cpu" and len(indices) < 2**31 - 1 else np.int64
    l2 = None
    if config.l2_scaling == "frequency":
        per_row = row_l2(config.l2, lengths, config.unobserved_weight * n_cols, "frequency", config.l2_exponent)
        l2 = torch.from_numpy(per_row.astype(np.float32)).to(device)
    return _Rows(
        n_rows=n_rows,
        n_cols=n_cols,
        crow=torch.from_numpy(indptr.astype(index_dtype, copy=False)).to(device),
        col=torch.from_numpy(indices.astype(index_dtype, copy=False)).to(device),
        c_minus_w0=torch.from_numpy(c_minus_w0).to(device),
        w0=config.unobserved_weight,
        lengths=torch.from_numpy(lengths).to(device),
        l2=l2,
        plan=plan,
    )


T = TypeVar("T")
R = TypeVar("R")
# Blocks per thread: with several per thread, a thread slowed by another process leaves its remaining
# blocks to the others instead of holding up the half-step.
BLOCKS_PER_THREAD = 4


@dataclass(frozen=True, eq=False)
class _Block:
    start: int
    stop: int
    rows: _Rows


def _blocks(rows: _Rows, n_blocks: int, dim: int) -> list[_Block]:
    """Consecutive row blocks of about equal cost (a row costs its nonzeros plus a d-vector update)."""
    if n_blocks <= 1 or rows.n_rows <= n_blocks:
        return [_Block(0, rows.n_rows, rows)]
    cost = np.cumsum(rows.lengths.cpu().numpy() + max(1, dim // 8))
    cuts = np.searchsorted(cost, cost[-1] * np.arange(1, n_blocks) / n_blocks)
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < rows.n_rows)), rows.n_rows]
    return [_Block(a, b, rows.block(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class _RowPool:
    """Runs independent row blocks on Python threads, each with torch single-threaded (see the module doc)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self._executor is None or len(items) == 1:
            return [fn(item) for item in items]
        return list(self._executor.map(fn, items))

    @contextmanager
    def running(self) -> Iterator[_RowPool]:
        if self.threads <= 1:
            yield self
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="wals") as executor:
                self._executor = executor
                yield self
        finally:
            self._executor = None
            torch.set_num_threads(previous)


_SERIAL = _RowPool(1)


def _observed_scores(rows: _Rows, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Return x_u·y_i for every nonzero (u, i) as a CSR tensor (sampled dense-dense product)."""
    # beta=0: the pattern's values are ignored, only its structure is used.
    scores: torch.Tensor = torch.sparse.sampled_addmm(rows.csr(rows.c_minus_w0), X, Y.T, beta=0.0)
    return scores


def _correction(rows: _Rows, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Return Σ_{i∈I_u} (c_ui − w0)(x_u·y_i) y_i for every row u, without an nnz × dim temporary."""
    scores = _observed_scores(rows, X, Y)
    scores.values().mul_(rows.c_minus_w0)
    result: torch.Tensor = scores @ Y
    return result


def _shared(rows: _Rows, Y: torch.Tensor, config: WALSConfig, gramian: torch.Tensor | None = None) -> torch.Tensor:
    """Return the part of every A_u shared by all rows: w0·YᵀY + λI (+ λ_u I per row when scaled).

    `gramian`, when given, is YᵀY already summed elsewhere (sharded_wals.py all-reduces it over ranks)."""
    shared = config.unobserved_weight * (Y.T @ Y if gramian is None else gramian)
    if rows.l2 is None:
        shared.diagonal().add_(config.l2)
    return shared


def _solve_cg(rows: _Rows, Y: torch.Tensor, X0: torch.Tensor, shared: torch.Tensor, config: WALSConfig) -> torch.Tensor:
    """Run cg_steps conjugate-gradient steps on all rows at once, starting from X0."""

    def dense_part(P: torch.Tensor) -> torch.Tensor:
        out = P @ shared
        return out if rows.l2 is None else out.addcmul_(rows.l2.unsqueeze(1), P)

    def matvec(P: torch.Tensor) -> torch.Tensor:
        return dense_part(P) + _correction(rows, P, Y)

    X = X0.clone()
    # R = b − A·X in one sparse pass: b_u − Σ_i (c_ui − w0)(x_u·y_i) y_i = Σ_i ((c_ui − w0)(1 − x_u·y_i) + w0) y_i.
    weights = _observed_scores(rows, X, Y)
    weights.values().neg_().add_(1.0).mul_(rows.c_minus_w0).add_(rows.w0)
    R = weights @ Y - dense_part(X)
    P = R.clone()
    rs = (R * R).sum(1)
    for step in range(config.cg_steps):
        AP = matvec(P)
        pAp = (P * AP).sum(1)
        # Rows that already converged have P = 0; their step length is set to 0 instead of 0/0.
        alpha = torch.where(pAp > 0, rs / pAp.clamp_min(torch.finfo(pAp.dtype).tiny), 0.0)
        X.addcmul_(alpha.unsqueeze(1), P)
        if step == config.cg_steps - 1:
            break
        R.addcmul_(alpha.unsqueeze(1), AP, value=-1.0)
        rs_new = (R * R).sum(1)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(torch.finfo(rs.dtype).tiny), 0.0)
        P = R + beta.unsqueeze(1) * P
        rs = rs_new
    return X


def _solve(
    rows: _Rows,
    blocks: list[_Block],
    Y: torch.Tensor,
    X0: torch.Tensor,
    config: WALSConfig,
    pool: _RowPool,
    observed_loss: list[float] | None = None,
    gramian: torch.Tensor | None = None,
) -> torch.Tensor:
    """One half-step; with the compiled CPU loop, appends the objective's observed part at the new factors
    to observed_loss when a list is given (other paths leave it empty: the caller computes it then).

    The compiled loop updates X0 in place (a second 200k × 64 matrix is 50 MB of peak), so callers pass
    factors they own and use the returned tensor."""
    shared = _shared(rows, Y, config, gramian)
    if rows.plan is not None:
        b = rows.csr(rows.c_minus_w0 + rows.w0) @ Y
        return cholesky.solve(rows.plan, shared, Y, b, pool.map, row_diagonal=rows.l2)
    if X0.device.type == "cpu" and USE_KERNEL:
        X = X0.to(torch.float32).contiguous()
        l2 = rows.l2.numpy() if rows.l2 is not None else np.empty(0, dtype=np.float32)
        row_loss = np.zeros(rows.n_rows, dtype=np.float64) if observed_loss is not None else None
        wals_kernel.half_step(
            rows.crow.numpy(),
            rows.col.numpy(),
            rows.c_minus_w0.numpy(),
            rows.w0,
            Y.contiguous().numpy(),
            shared.contiguous().numpy(),
            l2,
            X.numpy(),
            config.cg_steps,
            row_loss,
        )
        if observed_loss is not None and row_loss is not None:
            observed_loss.append(float(row_loss.sum()))
        return X
    # Empty rows have b = 0, so their exact solution is 0; starting there keeps CG on it.
    X0 = X0.masked_fill(rows.lengths.unsqueeze(1) == 0, 0.0)
    parts = pool.map(lambda blk: _solve_cg(blk.rows, Y, X0[blk.start : blk.stop], shared, config), blocks)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def solve_rows(
    rows: Interactions, fixed: torch.Tensor, config: WALSConfig, initial: torch.Tensor | None = None
) -> torch.Tensor:
    """Return the factors of `rows` (a CSR over the rows of `fixed`) minimising L with `fixed` held fixed."""
    if fixed.ndim != 2 or fixed.shape[0] != rows.n_items:
        raise ValueError(f"fixed factors must have shape ({rows.n_items}, dim), got {tuple(fixed.shape)}")
    fixed = fixed.to(torch.float32)
    if initial is None:
        initial = torch.zeros(rows.n_users, fixed.shape[1], dtype=torch.float32, device=fixed.device)
    elif tuple(initial.shape) != (rows.n_users, fixed.shape[1]):
        raise ValueError(f"initial must have shape ({rows.n_users}, {fixed.shape[1]}), got {tuple(initial.shape)}")
    prepared = _prepare_rows(rows, config, fixed.device)
    X0 = initial.to(device=fixed.device, dtype=torch.float32, copy=True)
    return _solve(prepared, [_Block(0, prepared.n_rows, prepared)], fixed, X0, config, _SERIAL)


def _l2_penalty(rows: _Rows, X: torch.Tensor, config: WALSConfig) -> torch.Tensor:
    """Σ_u λ_u ‖x_u‖² (λ‖X‖² without scaling)."""
    # A reduction, not a float64 copy of X (100 MB for 200k rows at dim 64).
    squares: torch.Tensor = torch.linalg.vector_norm(X, dim=1, dtype=torch.float64).square()
    return config.l2 * squares.sum() if rows.l2 is None else (rows.l2.double() * squares).sum()


def _objective(
    blocks: list[_Block],
    items: _Rows,
    U: torch.Tensor,
    V: torch.Tensor,
    config: WALSConfig,
    pool: _RowPool = _SERIAL,
    observed_total: float | None = None,
) -> float:
    """L(U, V); observed_total, when the half-step already summed the observed part, skips that pass."""
    w0 = config.unobserved_weight

    def observed(blk: _Block) -> float:
        # Σ c(1 − s)² − w0·s² = Σ (c − w0)(1 − s)² + w0·Σ (1 − 2s): float32 work in place, float64 sums.
        s = _observed_scores(blk.rows, U[blk.start : blk.stop], V).values()
        linear = blk.rows.n_nnz - 2.0 * float(s.sum(dtype=torch.float64))
        s.neg_().add_(1.0).square_().mul_(blk.rows.c_minus_w0)
        return float(s.sum(dtype=torch.float64)) + w0 * linear

    # Σ_unobserved (u·v)² = Σ_all (u·v)² − Σ_observed (u·v)², with Σ_all (u·v)² = trace((UᵀU)(VᵀV)).
    UtU = (U.T @ U).double()
    VtV = (V.T @ V).double()
    user_penalty = sum(_l2_penalty(b.rows, U[b.start : b.stop], config) for b in blocks)
    if observed_total is None and U.device.type == "cpu" and USE_KERNEL:
        observed_total = sum(
            wals_kernel.loss(
                b.rows.crow.numpy(),
                b.rows.col.numpy(),
                b.rows.c_minus_w0.numpy(),
                w0,
                U[b.start : b.stop].contiguous().numpy(),
                V.contiguous().numpy(),
            )
            for b in blocks
        )
    elif observed_total is None:
        observed_total = sum(pool.map(observed, blocks))
    total = observed_total + w0 * (UtU * VtV).sum() + user_penalty + _l2_penalty(items, V, config)
    return float(total)


def wals_loss(
    train: Interactions, U: torch.Tensor | np.ndarray, V: torch.Tensor | np.ndarray, config: WALSConfig
) -> float:
    """Return the WALS objective L (not normalised) of factors U, V on train, without a dense matrix."""
    U_t, V_t = torch.as_tensor(U, dtype=torch.float32), torch.as_tensor(V, dtype=torch.float32)
    if U_t.shape != (train.n_users, config.dim) or V_t.shape != (train.n_items, config.dim):
        raise ValueError(
            f"U and V must have shapes ({train.n_users}, {config.dim}) and ({train.n_items}, {config.dim}), "
            f"got {tuple(U_t.shape)} and {tuple(V_t.shape)}"
        )
    rows, items = _prepare(train, config, U_t.device, with_plan=False)
    return _objective([_Block(0, rows.n_rows, rows)], items, U_t, V_t.to(U_t.device), config)


def init_factors(n_rows: int, config: WALSConfig, generator: torch.Generator) -> torch.Tensor:
    """Return seeded normal factors with standard deviation init_scale (default 1/sqrt(dim))."""
    scale = config.init_scale if config.init_scale is not None else 1.0 / math.sqrt(config.dim)
    # Scaled in place: the same values without a second n_rows × dim matrix at the start (a rank's peak).
    return torch.randn(n_rows, config.dim, generator=generator, dtype=torch.float32).mul_(scale)


def fit_wals(
    train: Interactions,
    config: WALSConfig,
    callback: Callback | None = None,
    evaluator: Evaluator | None = None,
    *,
    resume: TrainingState | None = None,
    on_state: StateCallback | None = None,
    interrupt: Interrupt | None = None,
) -> EmbeddingModel:
    """Train WALS; history "loss" is the objective L divided by train.nnz after each full iteration.

    `resume` (a state from `on_state`, same data and config) continues after its iteration with its factors:
    WALS draws no random numbers after the start, so the result is the one of an uninterrupted run.
    """
    device = pick_device(config.device)
    if resume is None:
        # Factors are drawn on the CPU so a seed gives the same start on every device.
        generator = torch.Generator().manual_seed(config.seed)
        V = init_factors(train.n_items, config, generator).to(device)
        U = init_factors(train.n_users, config, generator).to(device)
    else:
        shapes = {"user_factors": (train.n_users, config.dim), "item_factors": (train.n_items, config.dim)}
        check_resume(resume, "wals", shapes)
        U = torch.tensor(resume.arrays["user_factors"], dtype=torch.float32, device=device)
        V = torch.tensor(resume.arrays["item_factors"], dtype=torch.float32, device=device)
    users, items = _prepare(train, config, device)
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    wals_kernel.set_threads(threads)
    user_blocks = _blocks(users, threads * BLOCKS_PER_THREAD, config.dim)
    item_blocks = _blocks(items, threads * BLOCKS_PER_THREAD, config.dim)
    pool = _RowPool(threads)

    def iteration(step: int) -> float:
        """Solve all users, then all items; return L / nnz at the new factors."""
        nonlocal U, V
        if interrupt is not None:
            interrupt()
        U = _solve(users, user_blocks, V, U, config, pool)
        if interrupt is not None:
            interrupt()
        observed: list[float] = []
        V = _solve(items, item_blocks, U, V, config, pool, observed)
        total = _objective(user_blocks, items, U, V, config, pool, observed[0] if observed else None)
        return total / max(train.nnz, 1)

    def factors() -> tuple[np.ndarray, np.ndarray]:
        return U.cpu().numpy(), V.cpu().numpy()

    def state_arrays() -> dict[str, np.ndarray]:
        # Both factor matrices are all WALS carries from one iteration to the next.
        return {"user_factors": U.cpu().numpy().copy(), "item_factors": V.cpu().numpy().copy()}

    with pool.running():
        history = run_steps(
            "wals", config.iterations, iteration, factors, state_arrays, callback, evaluator, on_state, resume
        )
    return EmbeddingModel(
        user_factors=np.ascontiguousarray(U.cpu().numpy(), dtype=np.float32),
        item_factors=np.ascontiguousarray(V.cpu().numpy(), dtype=np.float32),
        algorithm="wals",
        config=asdict(config),
        history=history,
    )
