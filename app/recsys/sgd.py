"""Matrix factorisation by SGD-family updates with negative sampling (see sampling.py for the samplers).

Score s_uj = u·v_j. Every observed interaction (u, i) is one positive example per epoch with weight 1
(raw weights/confidences are WALS's business and are ignored here). With its negatives J (the private
ones plus the valid shared in-batch ones) an example's loss is

    bce      ℓ = softplus(−s_ui) + Σ_{j∈J} softplus(s_uj)
    mse      ℓ = (s_ui − 1)² + Σ_{j∈J} s_uj²
    bpr      ℓ = (1/|J|) Σ_{j∈J} softplus(s_uj − s_ui)                 (0 when J is empty)
    softmax  ℓ = log(e^{z_i} + Σ_{j∈J} e^{z_j}) − z_i,   z_j = s_uj − log Q(j) with logQ correction, else s_uj

plus λ(‖u‖² + ‖v_i‖²) on the rows of the positive pair only. Negatives are not regularised, so the
strength of l2 does not depend on the negative strategy or on how many negatives there are (a row still
gets λ once for every positive example it takes part in). One update descends the sum of these over its
examples (one example for variant "sgd"), so a mini-batch step is the sum of the per-example gradients
at the same parameters and a learning rate means the same in every variant. Optimisers are row-wise and
lazy: only rows the update touches change, each by its summed gradient g:

    sgd      θ ← θ − η g
    adagrad  G ← G + g²;  θ ← θ − η g / (√G + 1e-10)
    adam     t ← t + 1 (per row);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
             θ ← θ − η m̂ / (√v̂ + 1e-8),  m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ),  β = (0.9, 0.999)

Adam counts steps per row, so rarely touched rows get the bias correction of their own step count.

Variants: "minibatch_sgd" reshuffles the examples every epoch, "minibatch" shuffles once before the first
epoch and then reuses the same batches in the same order, and "sgd" applies one example per update in a
fresh random order each epoch. On the CPU every variant runs in the compiled loops of sgd_kernel.py
(engine "compiled"; "sgd" as one sequential loop), the mini-batch variants on CUDA through torch. The
"numpy" engine, the reference for "sgd", stays exactly sequential yet vectorised: an example's level is
one more than that of the latest earlier example sharing a row with it, and each level (examples with
pairwise disjoint rows) is applied at once. Every row then sees the same updates, in the same order,
computed from the same values as in the one-by-one pass, so the result is that of one-by-one updates
(disjoint updates commute); for "hard" every scored candidate counts as a touched row.

Initial factors are normal with standard deviation init_scale, 1/sqrt(dim) when None (as in WALS).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from app.recsys import sgd_kernel
from app.recsys.base import (
    Callback,
    EmbeddingModel,
    Evaluator,
    Interrupt,
    StateCallback,
    TrainingState,
    check_resume,
)
from app.recsys.device import pick_device
from app.recsys.interactions import Interactions
from app.recsys.loop import run_steps
from app.recsys.sampling import (
    Negatives,
    NegativeSampler,
    check_free_items,
    probabilities,
    sampling_weights,
)
from app.recsys.sgd_config import (
    CORRECTABLE,
    IN_BATCH,
    PER_POSITIVE,
    SGDConfig,
    check_combination,
)

_ADAGRAD_EPS = 1e-10
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
# Examples handed to the compiled loop (or whose negatives the numpy "sgd" engine draws) between two
# interrupt() calls; mini-batch variants hand over whole batches, at least one.
_BLOCK = 16384
# Engines: "compiled" (numba, CPU; sgd_kernel.py), "torch" (the mini-batch variants on CUDA) and "numpy"
# (variant "sgd" by level scheduling, the reference the compiled loop is checked against).
ENGINES = ("compiled", "torch", "numpy")
# Hogwild threads each get at least this many examples of a block (see _Compiled.hogwild).
_MIN_EXAMPLES_PER_THREAD = 4096


def _init_scale(config: SGDConfig) -> float:
    return config.init_scale if config.init_scale is not None else 1.0 / math.sqrt(config.dim)


# ----------------------------------------------------------------------------------------------- torch path


class _TorchOptimizer:
    """Row-wise lazy optimiser over one parameter table (rows given to update() must be unique)."""

    def __init__(self, name: str, learning_rate: float, table: torch.Tensor) -> None:
        self.name = name
        self.lr = learning_rate
        self.state: list[torch.Tensor] = []
        if name == "adagrad":
            self.state = [torch.zeros_like(table)]
        elif name == "adam":
            steps = torch.zeros(table.shape[0], dtype=torch.float64, device=table.device)
            self.state = [torch.zeros_like(table), torch.zeros_like(table), steps]

    def update(self, table: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Apply one step to table[rows] with the summed gradients grad."""
        # index_select/index_copy_ on unique rows: cheaper than advanced-index read-modify-write on the CPU.
        if self.name == "sgd":
            table.index_copy_(0, rows, table.index_select(0, rows).sub_(grad, alpha=self.lr))
            return
        if self.name == "adagrad":
            acc = self.state[0].index_select(0, rows).addcmul_(grad, grad)
            self.state[0].index_copy_(0, rows, acc)
            step = grad / acc.sqrt_().add_(_ADAGRAD_EPS)
            table.index_copy_(0, rows, table.index_select(0, rows).sub_(step, alpha=self.lr))
            return
        b1, b2 = _ADAM_BETAS
        m_all, v_all, steps = self.state
        t = steps.index_select(0, rows).add_(1.0)
        steps.index_copy_(0, rows, t)
        m = m_all.index_select(0, rows).mul_(b1).add_(grad, alpha=1.0 - b1)
        v = v_all.index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        m_all.index_copy_(0, rows, m)
        v_all.index_copy_(0, rows, v)
        m_hat = m / (1.0 - b1**t).to(m.dtype).unsqueeze(1)
        v_hat = v / (1.0 - b2**t).to(v.dtype).unsqueeze(1)
        step = m_hat / v_hat.sqrt_().add_(_ADAM_EPS)
        table.index_copy_(0, rows, table.index_select(0, rows).sub_(step, alpha=self.lr))


def _loss_and_grads(
    loss: str,
    s_pos: torch.Tensor,
    s_neg: torch.Tensor,
    valid: torch.Tensor | None,
    lq_pos: torch.Tensor | None,
    lq_neg: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return losses ℓ (B,), ∂ℓ/∂s_pos (B,) and ∂ℓ/∂s_neg (B, M), 0 where not valid (None: all valid)."""
    # The (B, M) work dominates in-batch training, so each branch makes as few passes over it as it can.
    mask = None if valid is None else valid.to(s_neg.dtype)
    if loss == "bce":
        neg_loss, g_neg = F.softplus(s_neg), torch.sigmoid(s_neg)
        if mask is not None:
            neg_loss, g_neg = neg_loss * mask, g_neg * mask
        return F.softplus(-s_pos) + neg_loss.sum(1), -torch.sigmoid(-s_pos), g_neg
    if loss == "mse":
        g_neg = 2.0 * s_neg if mask is None else 2.0 * s_neg * mask
        return (s_pos - 1.0) ** 2 + 0.5 * (g_neg * s_neg).sum(1), 2.0 * (s_pos - 1.0), g_neg
    if loss == "bpr":
        x = s_neg - s_pos.unsqueeze(1)
        if mask is None:
            weight: torch.Tensor | float = 1.0 / max(s_neg.shape[1], 1)
        else:
            weight = mask / mask.sum(1, keepdim=True).clamp_min(1.0)
        g_neg = torch.sigmoid(x) * weight
        return (F.softplus(x) * weight).sum(1), -g_neg.sum(1), g_neg
    z_pos = s_pos if lq_pos is None else s_pos - lq_pos
    z_neg = s_neg if lq_neg is None else s_neg - lq_neg
    if valid is not None:
        z_neg = torch.where(valid, z_neg, -math.inf)
    peak = z_pos if z_neg.shape[1] == 0 else torch.maximum(z_pos, z_neg.max(1).values)
    e_pos, e_neg = torch.exp(z_pos - peak), torch.exp(z_neg - peak.unsqueeze(1))
    total = e_pos + e_neg.sum(1)
    return torch.log(total) + peak - z_pos, e_pos / total - 1.0, e_neg / total.unsqueeze(1)


def _sum_rows(rows: torch.Tensor, grad: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the unique rows and the summed gradient of each (duplicates added)."""
    # Coalescing a sparse tensor is a sort plus a segmented sum: several times faster on the CPU than
    # index_add_/scatter_add_ with repeated indices, and deterministic.
    summed = torch.sparse_coo_tensor(
        rows.unsqueeze(0), grad, (n_rows, grad.shape[1]), check_invariants=False
    ).coalesce()
    return summed.indices()[0], summed.values()


def _torch_update(
    table: torch.Tensor,
    optimizer: _TorchOptimizer,
    n_items: int,
    users: torch.Tensor,
    items: torch.Tensor,
    negatives: Negatives,
    config: SGDConfig,
    sampler: NegativeSampler | None,
) -> torch.Tensor:
    """Take one update on the batch of positives; table rows are items then users; return Σ ℓ (0-d)."""
    batch = users.shape[0]
    user_rows = users + n_items
    private, shared = negatives.items, negatives.shared
    k = private.shape[1]
    u, v_pos, v_neg, v_shared = table[user_rows], table[items], table[private], table[shared]
    s_pos = (u * v_pos).sum(1)
    s_private = torch.bmm(v_neg, u.unsqueeze(2)).squeeze(2)
    s_shared = u @ v_shared.T
    correct = config.loss == "softmax" and sampler is not None and sampler.uses_log_q
    lq_pos = lq_private = lq_shared = None
    if correct and sampler is not None:
        lq_pos = sampler.log_q(items, batch)
        lq_private, lq_shared = sampler.log_q(private, batch), sampler.log_q(shared, batch).unsqueeze(0)
    # Concatenate private and shared negatives only when both exist (mixed); otherwise use either as is.
    valid: torch.Tensor | None
    if shared.numel() == 0:
        s_neg, valid, lq_neg = s_private, None, lq_private
    elif k == 0:
        s_neg, valid, lq_neg = s_shared, negatives.shared_valid, lq_shared
    else:
        s_neg = torch.cat([s_private, s_shared], 1)
        valid = torch.cat([torch.ones_like(private, dtype=torch.bool), negatives.shared_valid], 1)
        lq_neg = None
        if lq_private is not None and lq_shared is not None:
            lq_neg = torch.cat([lq_private, lq_shared.expand(batch, -1)], 1)
    losses, g_pos, g_neg = _loss_and_grads(config.loss, s_pos, s_neg, valid, lq_pos, lq_neg)
    g_private, g_shared = g_neg[:, :k], g_neg[:, k:]
    # Gradients of ℓ through s_uj = u·v_j, plus 2λθ for the positive pair's rows.
    grad_u = g_pos.unsqueeze(1) * v_pos
    grad_pos = g_pos.unsqueeze(1) * u
    grad_neg = g_private.unsqueeze(2) * u.unsqueeze(1)
    if k:
        grad_u += torch.bmm(g_private.unsqueeze(1), v_neg).squeeze(1)
    if shared.numel():
        grad_u += g_shared @ v_shared
    grad_shared = g_shared.T @ u
    if config.l2 > 0.0:
        grad_u.add_(u, alpha=2.0 * config.l2)
        grad_pos.add_(v_pos, alpha=2.0 * config.l2)
    rows = torch.cat([user_rows, items, private.reshape(-1), shared])
    grad = torch.cat([grad_u, grad_pos, grad_neg.reshape(-1, table.shape[1]), grad_shared])
    unique, summed = _sum_rows(rows, grad, table.shape[0])
    optimizer.update(table, unique, summed)
    return losses.sum()


# ----------------------------------------------------------------------------------------------- numpy path


class _NumpyOptimizer:
    """The same row-wise lazy optimiser on a numpy table (rows given to update() must be unique)."""

    def __init__(self, name: str, learning_rate: float, table: np.ndarray) -> None:
        self.name = name
        self.lr = np.float32(learning_rate)
        self.state: list[np.ndarray] = []
        if name == "adagrad":
            self.state = [np.zeros_like(table)]
        elif name == "adam":
            self.state = [np.zeros_like(table), np.zeros_like(table), np.zeros(table.shape[0], np.float64)]

    def update(self, table: np.ndarray, rows: np.ndarray, values: np.ndarray, grad: np.ndarray) -> None:
        """Set table[rows] from its current values after one step with the summed gradients grad."""
        if self.name == "sgd":
            table[rows] = values - self.lr * grad
            return
        if self.name == "adagrad":
            acc = self.state[0][rows] + grad * grad
            self.state[0][rows] = acc
            table[rows] = values - self.lr * grad / (np.sqrt(acc) + np.float32(_ADAGRAD_EPS))
            return
        b1, b2 = _ADAM_BETAS
        m_all, v_all, steps = self.state
        t = steps[rows] + 1.0
        steps[rows] = t
        m = np.float32(b1) * m_all[rows] + np.float32(1.0 - b1) * grad
        v = np.float32(b2) * v_all[rows] + np.float32(1.0 - b2) * grad * grad
        m_all[rows], v_all[rows] = m, v
        m_hat = m / (1.0 - b1**t).astype(np.float32)[:, None]
        v_hat = v / (1.0 - b2**t).astype(np.float32)[:, None]
        table[rows] = values - self.lr * m_hat / (np.sqrt(v_hat) + np.float32(_ADAM_EPS))


def _numpy_loss(loss: str, s: np.ndarray, lq: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Return (Σ ℓ, ∂ℓ/∂s) for scores s (c, 1 + K) whose column 0 is the positive."""
    if loss == "bce":
        z = s.copy()
        z[:, 0] = -z[:, 0]
        g = scipy.special.expit(z)
        g[:, 0] = -g[:, 0]
        return float(np.logaddexp(0.0, z).sum()), g
    if loss == "mse":
        r = s.copy()
        r[:, 0] -= 1.0
        return float((r * r).sum()), 2.0 * r
    if loss == "bpr":
        k = s.shape[1] - 1
        x = s[:, 1:] - s[:, :1]
        dx = scipy.special.expit(x) / np.float32(k)
        g = np.empty_like(s)
        g[:, 0] = -dx.sum(1)
        g[:, 1:] = dx
        return float(np.logaddexp(0.0, x).sum()) / k, g
    z = s - lq if lq is not None else s
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    total = e.sum(1, keepdims=True)
    g = e / total
    g[:, 0] -= 1.0
    return float((np.log(total[:, 0]) - z[:, 0]).sum()), g


def _schedule(touched: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Return (order, bounds): groups order[bounds[g]:bounds[g+1]] of pairwise row-disjoint examples.

    An example's level is 1 + the highest level among the earlier examples that touch one of its rows.
    Applying the levels in turn applies every row's updates in the original order, each from the same
    values, so the result equals the one-by-one pass over `touched` (updates of disjoint rows commute).
    """
    n, width = touched.shape
    flat = touched.reshape(-1)
    # Unique keys (row, position) make the faster unstable sort keep each row's entries in example order.
    order = np.argsort(flat * flat.shape[0] + np.arange(flat.shape[0]))
    example = order // width
    sorted_rows = flat[order]
    same_row = sorted_rows[1:] == sorted_rows[:-1]
    # The latest earlier example touching each entry's row; n (a level-0 sentinel) when there is none.
    earlier = np.where(same_row & (example[1:] != example[:-1]), example[:-1], n)
    previous_flat = np.full(flat.shape[0], n, dtype=np.int64)
    previous_flat[order[1:]] = earlier
    previous = previous_flat.reshape(n, width)
    last = np.where(previous == n, -1, previous).max(1).tolist()
    # Runs of consecutive examples with no dependency among them get their levels in one vectorised step.
    runs, start = [0], 0
    for e, p in enumerate(last):
        if p >= start:
            runs.append(e)
            start = e
    runs.append(n)
    level = np.zeros(n + 1, dtype=np.int64)
    for a, b in zip(runs[:-1], runs[1:], strict=True):
        level[a:b] = level[previous[a:b]].max(1) + 1
    by_level = np.argsort(level[:n], kind="stable")
    counts = np.bincount(level[:n])
    bounds = np.concatenate([[0], np.cumsum(counts[counts > 0])]).tolist()
    return by_level, bounds


def _numpy_group(
    table: np.ndarray,
    optimizer: _NumpyOptimizer,
    rows: np.ndarray,
    candidates: np.ndarray | None,
    config: SGDConfig,
    log_q: np.ndarray | None,
    dedupe: bool,
) -> float:
    """Update a group of examples touching disjoint rows; rows (c, 2 + K) = [user, positive, negatives]."""
    if candidates is not None:
        # Dynamic negative sampling: score the candidates with the current factors, keep the best K.
        k = config.negatives.per_positive
        u = table[rows[:, 0]]
        scores = np.matmul(table[candidates], u[:, :, None])[:, :, 0]
        if k < scores.shape[1]:
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            chosen = np.take_along_axis(candidates, best, axis=1)
        else:
            chosen = candidates
        rows = np.concatenate([rows, chosen], axis=1)
    values = table[rows]
    u, v = values[:, 0], values[:, 1:]
    s = np.matmul(v, u[:, :, None])[:, :, 0]
    lq = log_q[rows[:, 1:]] if log_q is not None else None
    total, g = _numpy_loss(config.loss, s, lq)
    grad = np.empty_like(values)
    grad[:, 0] = np.matmul(g[:, None, :], v)[:, 0]
    grad[:, 1:] = g[:, :, None] * u[:, None, :]
    if config.l2 > 0.0:
        grad[:, :2] += np.float32(2.0 * config.l2) * values[:, :2]  # the user and the positive item
    flat_rows = rows.reshape(-1)
    flat_values = values.reshape(-1, values.shape[2])
    flat_grad = grad.reshape(-1, values.shape[2])
    if dedupe:
        # A row repeated inside one example (a negative drawn twice) takes its summed gradient once.
        by_row = np.argsort(flat_rows, kind="stable")
        sorted_rows = flat_rows[by_row]
        starts = np.flatnonzero(np.concatenate([[True], sorted_rows[1:] != sorted_rows[:-1]]))
        flat_grad = np.add.reduceat(flat_grad[by_row], starts, axis=0)
        flat_rows, flat_values = sorted_rows[starts], flat_values[by_row[starts]]
    optimizer.update(table, flat_rows, flat_values, flat_grad)
    return total


def _numpy_run(
    table: np.ndarray,
    optimizer: _NumpyOptimizer,
    rows: np.ndarray,
    candidates: np.ndarray | None,
    config: SGDConfig,
    log_q: np.ndarray | None,
) -> float:
    """Apply the examples rows (n, 2 + K) as one-by-one updates in order would (see _schedule); return Σ ℓ."""
    if candidates is not None:
        touched = np.concatenate([rows, candidates], axis=1)
        repeats = np.ones(rows.shape[0], dtype=bool)
    else:
        touched = rows
        negatives = np.sort(rows[:, 2:], axis=1)
        repeats = (negatives[:, 1:] == negatives[:, :-1]).any(1)
    order, bounds = _schedule(touched)
    rows, repeats = rows[order], repeats[order]
    candidates = candidates[order] if candidates is not None else None
    has_repeat = np.logical_or.reduceat(repeats, bounds[:-1]).tolist()
    total = 0.0
    for a, b, dedupe in zip(bounds[:-1], bounds[1:], has_repeat, strict=True):
        cand = candidates[a:b] if candidates is not None else None
        total += _numpy_group(table, optimizer, rows[a:b], cand, config, log_q, dedupe)
    return total


# ----------------------------------------------------------------------------------------------- compiled path


class _Compiled:
    """What the compiled loops of sgd_kernel.py need for one run: the CSR, the sampler's tables, scratch.

    Mini-batch variants run Hogwild on `threads` threads: each takes every threads-th batch of a block of
    examples and updates the shared table's rows with no lock (sgd_kernel's docstring). One thread gives the
    exact mini-batch semantics, bit for bit on every run; more give the same statistics, not the same bits.
    """

    def __init__(
        self, train: Interactions, config: SGDConfig, table: np.ndarray, state: list[np.ndarray], threads: int
    ) -> None:
        negatives = config.negatives
        strategy = negatives.strategy
        if strategy in PER_POSITIVE:
            check_free_items(train)
        self.config = config
        self.table = table
        self.n_items = train.n_items
        self.indptr = train.indptr.astype(np.int64, copy=False)
        self.indices = train.indices
        self.bits = sgd_kernel.positive_bits(self.indptr, self.indices, train.n_items)
        self.counts = train.item_counts()
        self.k = negatives.n_private
        self.shared = strategy in IN_BATCH
        self.sampler = sgd_kernel.SAMPLERS["uniform" if strategy == "mixed" else strategy if self.k else "none"]
        weights = sampling_weights(negatives, self.counts)
        self.weights = weights
        self.total = float(weights.sum())
        self.prob, self.alias = sgd_kernel.alias_table(weights)
        self.loss = sgd_kernel.LOSSES[config.loss]
        self.optimizer = sgd_kernel.OPTIMIZERS[config.optimizer]
        self.correct = config.loss == "softmax" and negatives.logq_correction and strategy in CORRECTABLE
        self._log_q: dict[int, np.ndarray] = {}
        dim = config.dim
        self.state0 = state[0] if state else np.zeros((0, dim), np.float32)
        self.state1 = state[1] if len(state) > 1 else np.zeros((0, dim), np.float32)
        self.steps = state[2] if len(state) > 2 else np.zeros(0, np.float64)
        # In-batch steps run Hogwild too: each thread's GEMMs on one OpenMP thread (hogwild() sets it), and the
        # numba passes release the GIL (ml-1m, default recipe: 4.2 s/epoch on two threads against 6.85 on one,
        # the same CPU time and loss).
        self.threads = 1 if config.variant == "sgd" else max(1, threads)
        batch = 1 if config.variant == "sgd" else min(config.batch_size, train.nnz)
        n_shared = batch if self.shared else 0
        n_rows = table.shape[0]
        self.works = [
            sgd_kernel.work_buffers(n_rows, batch, self.k, negatives.hard_candidates, dim, n_shared)
            for _ in range(self.threads)
        ]
        n_marks = train.n_items if self.shared else 0
        self.marks = [np.zeros(n_marks, dtype=bool) for _ in range(self.threads)]
        self.slots = [np.full(n_marks, -1, dtype=np.int64) for _ in range(self.threads)]
        self.ibufs = [np.zeros(n_shared, dtype=np.int32) for _ in range(self.threads)]
        # Per thread, the (B, U) scores and the two (·, d) products, written in place by the GEMMs: a fresh
        # multi-megabyte result a batch is a fresh mapping whose pages fault in every time.
        self.gemm_out = [
            (
                np.empty(n_shared * n_shared, np.float32),
                np.empty((n_shared, dim), np.float32),
                np.empty((n_shared, dim), np.float32),
            )
            for _ in range(self.threads)
        ]

    def log_q(self, batch_size: int) -> np.ndarray:
        """log Q per item for the softmax correction of a batch of this size (empty: no correction)."""
        if not self.correct:
            return np.zeros(0, np.float32)
        if batch_size not in self._log_q:
            with np.errstate(divide="ignore"):
                q = np.log(probabilities(self.config.negatives, self.counts, batch_size)).astype(np.float32)
            self._log_q[batch_size] = q
        return self._log_q[batch_size]

    def private(
        self, users: np.ndarray, items: np.ndarray, first: int, key: np.uint64, part: int = 0, parts: int = 1
    ) -> float:
        """Batches part, part + parts, … of these examples, private negatives only (epoch positions from first)."""
        c = self.config
        return float(
            sgd_kernel.private_batches(
                self.table,
                users,
                items,
                first,
                c.batch_size,
                key,
                self.sampler,
                self.k,
                c.negatives.hard_candidates,
                self.indptr,
                self.indices,
                self.bits,
                self.prob,
                self.alias,
                self.weights,
                self.total,
                self.loss,
                self.log_q(c.batch_size),
                self.optimizer,
                c.learning_rate,
                c.l2,
                self.state0,
                self.state1,
                self.steps,
                self.works[part],
                part,
                parts,
            )  # fmt: skip
        )

    def sequential(self, users: np.ndarray, items: np.ndarray, first: int, key: np.uint64) -> float:
        """Variant "sgd" over these examples, one update each, in order."""
        c = self.config
        return float(
            sgd_kernel.sequential_examples(
                self.table,
                users,
                items,
                first,
                key,
                self.sampler,
                self.k,
                c.negatives.hard_candidates,
                self.indptr,
                self.indices,
                self.bits,
                self.prob,
                self.alias,
                self.weights,
                self.total,
                self.loss,
                self.log_q(1),
                self.optimizer,
                c.learning_rate,
                c.l2,
                self.state0,
                self.state1,
                self.steps,
                self.works[0],
            )  # fmt: skip
        )

    def shared_batch(self, users: np.ndarray, items: np.ndarray, first: int, key: np.uint64, part: int = 0) -> float:
        """One batch whose negatives include the batch's positives (in_batch, mixed)."""
        c = self.config
        table = self.table
        rows, scores, best, losses, head, uniq, acc = self.works[part][:7]
        b = users.shape[0]
        shared, counts = np.unique(items, return_counts=True)
        u = torch.from_numpy(table[users + self.n_items])
        v = torch.from_numpy(table[shared])
        scores_out, user_out, shared_out = self.gemm_out[part]
        n_shared = shared.shape[0]
        s_shared = scores_out[: b * n_shared].reshape(b, n_shared)
        torch.mm(u, v.T, out=torch.from_numpy(s_shared))
        if c.loss == "softmax":
            sgd_kernel.shared_softmax(
                table, users, items, first, key, self.k, self.indptr, self.indices, self.bits, self.prob,
                self.alias, self.weights, self.total, shared, counts.astype(np.float64), s_shared, self.log_q(b),
                rows, scores, best, losses, self.slots[part], self.ibufs[part],
            )  # fmt: skip
        else:
            sgd_kernel.shared_coefficients(
                table, users, items, first, key, self.k, self.indptr, self.indices, self.bits, self.prob,
                self.alias, self.weights, self.total, shared, counts.astype(np.float64), s_shared, self.loss,
                self.log_q(b), rows, scores, best, losses, self.marks[part],
            )  # fmt: skip
        # The two dense products of the coefficients with the factors go to torch's GEMM (sgd_kernel docstring).
        g = torch.from_numpy(s_shared)
        extra_user, extra_shared = user_out[:b], shared_out[:n_shared]
        torch.mm(g, v, out=torch.from_numpy(extra_user))
        torch.mm(g.T, u, out=torch.from_numpy(extra_shared))
        sgd_kernel.apply_batch(
            table, rows, scores, b, extra_user, shared, extra_shared, head, uniq, acc, self.optimizer,
            c.learning_rate, c.l2, self.state0, self.state1, self.steps,
        )  # fmt: skip
        return float(losses[:b].sum())

    def shared_batches(
        self, users: np.ndarray, items: np.ndarray, first: int, key: np.uint64, part: int = 0, parts: int = 1
    ) -> float:
        """Batches part, part + parts, … of these examples, with shared negatives."""
        batch = self.config.batch_size
        total = 0.0
        for start in range(part * batch, users.shape[0], parts * batch):
            end = start + batch
            total += self.shared_batch(users[start:end], items[start:end], first + start, key, part)
        return total

    def hogwild(self, main: Callable[[], float], worker: Callable[[int], float], parts: int) -> float:
        """main() here and worker(part) for parts 1..parts-1 on their own threads at once; Σ results.

        The loops release the GIL. A worker's exception is re-raised here; main's (an interrupt) is too,
        once the workers have finished their share.
        """
        results = [0.0] * parts
        errors: list[BaseException] = []

        def target(part: int) -> None:
            try:
                # OpenMP's thread count is per thread: a new thread's torch GEMMs would start a team of all the
                # cores, which spins against the other Hogwild threads (3x the CPU time for in-batch steps).
                torch.set_num_threads(1)
                with sgd_kernel.one_thread():
                    results[part] = worker(part)
            except BaseException as exc:  # re-raised by the calling thread
                errors.append(exc)

        workers = [threading.Thread(target=target, args=(part,)) for part in range(1, parts)]
        for thread in workers:
            thread.start()
        try:
            with sgd_kernel.one_thread():
                results[0] = main()
        finally:
            for thread in workers:
                thread.join()
        if errors:
            raise errors[0]
        return sum(results)

    def epoch(
        self, users: np.ndarray, items: np.ndarray, generator: torch.Generator, interrupt: Interrupt | None
    ) -> float:
        """One epoch over the examples in this order; its sampling key is drawn from the run's generator."""
        key = np.uint64(int(torch.randint(0, 2**62, (1,), generator=generator)))
        n = users.shape[0]
        total = 0.0
        if self.config.variant == "sgd":
            for start in range(0, n, _BLOCK):
                if interrupt is not None:
                    interrupt()
                with sgd_kernel.one_thread():
                    total += self.sequential(users[start : start + _BLOCK], items[start : start + _BLOCK], start, key)
            return total
        batch = self.config.batch_size
        for size in (batch, n % batch):
            self.log_q(size)  # filled here, not by the threads
        run_part = self.shared_batches if self.shared else self.private
        chunk = max(1, _BLOCK // batch) * batch
        for start in range(0, n, chunk):
            u, i = users[start : start + chunk], items[start : start + chunk]
            # Below _MIN_EXAMPLES_PER_THREAD examples per thread, a thread's start-up costs more than it saves;
            # small data stay on one thread, and so bit-reproducible.
            parts = min(self.threads, max(1, u.shape[0] // _MIN_EXAMPLES_PER_THREAD))

            def main(u: np.ndarray = u, i: np.ndarray = i, start: int = start, parts: int = parts) -> float:
                # This thread's share (batches 0, parts, 2·parts, … of the block), one batch a call so that
                # interrupt() runs before each of them; without interrupt, in one call, as the workers.
                if interrupt is None:
                    return run_part(u, i, start, key, 0, parts)
                done = 0.0
                for at in range(0, u.shape[0], parts * batch):
                    if interrupt is not None:
                        interrupt()
                    done += run_part(u[at : at + batch], i[at : at + batch], start + at, key, 0, 1)
                return done

            def worker(
                part: int, u: np.ndarray = u, i: np.ndarray = i, start: int = start, parts: int = parts
            ) -> float:
                return run_part(u, i, start, key, part, parts)

            total += self.hogwild(main, worker, parts)
        return total


def engine_for(config: SGDConfig) -> str:
    """The engine fit_sgd trains this config with: "compiled" on the CPU, "torch" on CUDA."""
    if config.variant == "sgd":
        return "compiled"
    return "compiled" if pick_device(config.device).type == "cpu" else "torch"


# ----------------------------------------------------------------------------------------------- training


def _examples(train: Interactions) -> tuple[np.ndarray, np.ndarray]:
    return train.row_users(), train.indices.astype(np.int64)


def _sgd_epoch(
    table: np.ndarray,
    optimizer: _NumpyOptimizer,
    train: Interactions,
    sampler: NegativeSampler,
    generator: torch.Generator,
    config: SGDConfig,
    log_q: np.ndarray | None,
    interrupt: Interrupt | None = None,
) -> float:
    """One epoch of variant "sgd": a fresh random order, one example per update; return Σ ℓ."""
    users, items = _examples(train)
    order = torch.randperm(train.nnz, generator=generator).numpy()
    strategy = config.negatives.strategy
    total = 0.0
    for start in range(0, train.nnz, _BLOCK):
        if interrupt is not None:
            interrupt()
        idx = order[start : start + _BLOCK]
        u, i = users[idx], items[idx]
        u_t = torch.from_numpy(u)
        candidates = None
        negatives = np.zeros((idx.shape[0], 0), dtype=np.int64)
        if strategy == "hard":
            candidates = sampler.candidates(u_t, generator).numpy()
        elif strategy != "none":
            negatives = sampler.sample(u_t, torch.from_numpy(i), generator).items.numpy()
        rows = np.concatenate([(u + train.n_items)[:, None], i[:, None], negatives], axis=1)
        total += _numpy_run(table, optimizer, rows, candidates, config, log_q)
    return total


def _minibatch_epoch(
    table: torch.Tensor,
    optimizer: _TorchOptimizer,
    users: torch.Tensor,
    items: torch.Tensor,
    order: torch.Tensor,
    sampler: NegativeSampler,
    generator: torch.Generator,
    config: SGDConfig,
    n_items: int,
    interrupt: Interrupt | None = None,
) -> float:
    """One epoch of a mini-batch variant over the examples in `order`; return Σ ℓ."""
    total = torch.zeros((), dtype=torch.float64, device=table.device)
    for start in range(0, order.shape[0], config.batch_size):
        if interrupt is not None:
            interrupt()
        idx = order[start : start + config.batch_size]
        u, i = users[idx], items[idx]
        negatives = sampler.sample(u, i, generator, table[n_items:], table[:n_items])
        total += _torch_update(table, optimizer, n_items, u, i, negatives, config, sampler)
    return float(total)


def fit_sgd(
    train: Interactions,
    config: SGDConfig,
    callback: Callback | None = None,
    evaluator: Evaluator | None = None,
    *,
    resume: TrainingState | None = None,
    on_state: StateCallback | None = None,
    interrupt: Interrupt | None = None,
) -> EmbeddingModel:
    """Train MF by SGD with negative sampling; history "loss" is the epoch's mean ℓ per positive (no l2).

    `resume` (a state from `on_state`, same data and config) restores the parameters, the optimiser's state
    and the random generator after its epoch, so the run goes on exactly as the uninterrupted one would.
    `interrupt` is called before every mini-batch (every block of examples for variant "sgd"); with Hogwild
    threads, before each of the calling thread's batches.
    """
    # One intra-op thread: a mini-batch's kernels are too small to split (ml-1m, dim 64, the default recipe:
    # 13.0 s/epoch with 1 thread, 13.9 with 2 on a quiet 2-core machine), and with another process busy
    # every kernel's thread barrier waits for a descheduled thread (34.2 s with 2 threads, 14.6 with 1).
    # The compiled loops (sgd_kernel.py) run Hogwild on as many threads as torch had.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_sgd(train, config, callback, evaluator, resume, on_state, interrupt, threads=previous)
    finally:
        torch.set_num_threads(previous)


def _fit_sgd(
    train: Interactions,
    config: SGDConfig,
    callback: Callback | None,
    evaluator: Evaluator | None,
    resume: TrainingState | None = None,
    on_state: StateCallback | None = None,
    interrupt: Interrupt | None = None,
    engine: str | None = None,
    threads: int = 1,
) -> EmbeddingModel:
    """fit_sgd on a chosen engine (None: engine_for(config)); tests compare the engines through it."""
    check_combination(config)
    if train.nnz == 0:
        raise ValueError("train has no interactions; SGD needs at least one positive example")
    engine = engine_for(config) if engine is None else engine
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if (engine == "numpy") != (config.variant == "sgd") and engine != "compiled":
        raise ValueError(f"engine {engine!r} does not train variant {config.variant!r}")
    compiled = engine == "compiled"
    pure = engine == "numpy"
    device = torch.device("cpu") if pure or compiled else pick_device(config.device)
    n_rows = train.n_items + train.n_users
    if resume is None:
        # Factors are drawn on the CPU so a seed gives the same start on every device (items first, as WALS).
        init = torch.Generator().manual_seed(config.seed)
        scale = _init_scale(config)
        V = torch.randn(train.n_items, config.dim, generator=init, dtype=torch.float32) * scale
        U = torch.randn(train.n_users, config.dim, generator=init, dtype=torch.float32) * scale
        table = torch.cat([V, U]).to(device)  # one table: items, then users at offset n_items
    else:
        check_resume(resume, "sgd", {"table": (n_rows, config.dim)})
        table = torch.tensor(resume.arrays["table"], dtype=torch.float32, device=device)
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    n_items = train.n_items

    table_np = table.numpy() if pure or compiled else None
    lr = config.learning_rate
    # The compiled path keeps its optimiser state in the numpy optimiser's arrays (same layout, same resume).
    np_optimizer = _NumpyOptimizer(config.optimizer, lr, table_np) if table_np is not None else None
    kernel = None
    sampler = None
    if compiled:
        assert table_np is not None and np_optimizer is not None
        kernel = _Compiled(train, config, table_np, np_optimizer.state, threads)
    else:
        sampler = NegativeSampler(config.negatives, train, device)
    torch_optimizer = None if pure or compiled else _TorchOptimizer(config.optimizer, lr, table)
    log_q = None
    if pure and sampler is not None and config.loss == "softmax" and sampler.uses_log_q:
        log_q = sampler.log_q(torch.arange(n_items)).numpy()
    users_np, items_np = _examples(train)
    users_t, items_t = torch.from_numpy(users_np).to(device), torch.from_numpy(items_np).to(device)
    fixed_order = None
    if config.variant == "minibatch":
        # Drawn again on resume (the generator then jumps to the saved state): the same fixed batches.
        fixed_order = torch.randperm(train.nnz, generator=generator, device=device)
    optimizer_state: list[Any] = []
    if np_optimizer is not None:
        optimizer_state = np_optimizer.state
    elif torch_optimizer is not None:
        optimizer_state = torch_optimizer.state

    if resume is not None:
        _restore_optimizer(optimizer_state, resume, config.optimizer)
        generator.set_state(torch.from_numpy(np.array(resume.arrays["rng"], dtype=np.uint8)))

    def epoch(step: int) -> float:
        """One epoch; return its mean ℓ per positive."""
        if kernel is not None:
            perm = fixed_order if fixed_order is not None else torch.randperm(train.nnz, generator=generator)
            order_np = perm.numpy()
            with np.errstate(over="ignore", invalid="ignore"):
                total = kernel.epoch(users_np[order_np], items_np[order_np], generator, interrupt)
        elif table_np is not None and np_optimizer is not None and sampler is not None:
            # Overflow only happens when training diverges, which the finite-loss check below reports.
            with np.errstate(over="ignore", invalid="ignore"):
                total = _sgd_epoch(table_np, np_optimizer, train, sampler, generator, config, log_q, interrupt)
        else:
            assert torch_optimizer is not None and sampler is not None
            order = fixed_order
            if order is None:
                order = torch.randperm(train.nnz, generator=generator, device=device)
            total = _minibatch_epoch(
                table, torch_optimizer, users_t, items_t, order, sampler, generator, config, n_items, interrupt
            )
        loss = total / train.nnz
        if not math.isfinite(loss):
            raise ValueError(
                f"training diverged: the mean loss of epoch {step} is {loss}; lower learning_rate "
                f"(now {config.learning_rate}) or use optimizer 'adagrad' or 'adam'"
            )
        return loss

    def factors() -> tuple[np.ndarray, np.ndarray]:
        return table[n_items:].cpu().numpy(), table[:n_items].cpu().numpy()

    def state_arrays() -> dict[str, np.ndarray]:
        # Parameters, the optimiser's accumulators and the generator's position.
        arrays = {"table": _as_numpy(table), "rng": generator.get_state().numpy().copy()}
        return arrays | {f"optimizer_{i}": _as_numpy(a) for i, a in enumerate(optimizer_state)}

    history = run_steps("sgd", config.epochs, epoch, factors, state_arrays, callback, evaluator, on_state, resume)
    return EmbeddingModel(
        user_factors=table[n_items:].cpu().numpy().copy(),
        item_factors=table[:n_items].cpu().numpy().copy(),
        algorithm="sgd",
        config=asdict(config),
        history=history,
    )


def _as_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.cpu().numpy().copy() if isinstance(array, torch.Tensor) else array.copy()


def _restore_optimizer(state: list[Any], resume: TrainingState, optimizer: str) -> None:
    """Copy the saved accumulators into the optimiser's own arrays (in place: the optimiser holds them)."""
    saved = sorted(name for name in resume.arrays if name.startswith("optimizer_"))
    if len(saved) != len(state):
        raise ValueError(f"resumed state has {len(saved)} optimizer arrays, optimizer {optimizer!r} keeps {len(state)}")
    for i, target in enumerate(state):
        source = resume.arrays.get(f"optimizer_{i}")
        if source is None or tuple(source.shape) != tuple(target.shape):
            got = None if source is None else tuple(source.shape)
            raise ValueError(f"resumed optimizer array {i} has shape {got}, expected {tuple(target.shape)}")
        if isinstance(target, torch.Tensor):
            target.copy_(torch.from_numpy(np.asarray(source)))
        else:
            target[...] = source
