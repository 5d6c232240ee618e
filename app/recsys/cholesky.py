"""Batched exact solves of one small SPD system per row of a sparse matrix.

Row u has the system  A_u x_u = b_u  with  A_u = S + Σ_{i∈I_u} w_ui y_i y_iᵀ,  where S is shared by all
rows (d × d), I_u are the row's nonzero columns and y_i rows of a dense Y. Rows are sorted by length and
cut into chunks padded to their longest row (padding weighs 0); each chunk gathers Y_I as [B, L, d],
builds A with one batched matmul and solves it with a batched Cholesky factorisation.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.recsys.interactions import Interactions

# Upper bound on the temporaries of one chunk ([B, L, d] gathers and [B, d, d] systems).
CHUNK_BYTES = 64 * 2**20
# Rows in one chunk are at most this many times longer than its shortest row, which bounds padding to ~12%.
MAX_PADDING = 1.25


@dataclass(frozen=True, eq=False)
class Chunk:
    """Rows of similar length padded to a common width L."""

    rows: torch.Tensor  # int64 [B] row indices
    cols: torch.Tensor  # int64 [B, L] column of each slot (0 in padding)
    weights: torch.Tensor  # float32 [B, L] w_ui, or sqrt(w_ui) when planned with sqrt_weights (0 in padding)


@dataclass(frozen=True, eq=False)
class Plan:
    """The chunks of one sparsity pattern; built once and reused while only Y changes."""

    n_rows: int
    chunks: tuple[Chunk, ...]
    sqrt_weights: bool  # chunk weights hold sqrt(w_ui), so A = S + (√w·Y_I)ᵀ(√w·Y_I) needs one scaled gather


def chunk_bounds(sorted_lengths: np.ndarray, dim: int) -> list[tuple[int, int]]:
    """Split rows sorted by length into [start, end) chunks whose padded temporaries fit CHUNK_BYTES."""
    budget = CHUNK_BYTES // 4
    max_batch = max(1, budget // (dim * dim))
    bounds: list[tuple[int, int]] = []
    start, n = 0, sorted_lengths.shape[0]
    while start < n:
        # A chunk stops where lengths exceed MAX_PADDING times its first row's, and where the padded gather
        # ((end − start) · longest · dim floats) outgrows the budget; both grow with `end` because lengths
        # are sorted, so bisection finds the largest valid end.
        longest = max(1, int(sorted_lengths[start] * MAX_PADDING))
        limit = min(start + max_batch, int(np.searchsorted(sorted_lengths, longest, side="right")))
        count = bisect.bisect_right(
            range(start + 1, limit + 1), budget, key=lambda e: (e - start) * int(sorted_lengths[e - 1]) * dim
        )
        end = start + max(1, count)
        bounds.append((start, end))
        start = end
    return bounds


def plan(rows: Interactions, weights: np.ndarray, dim: int, device: torch.device) -> Plan:
    """Plan the chunks for rows with per-nonzero weights w_ui (float32, aligned with rows.indices)."""
    sqrt_weights = bool(weights.size == 0 or weights.min() >= 0.0)
    slot_weights = np.sqrt(weights) if sqrt_weights else weights
    lengths = rows.user_counts()
    nonempty = np.flatnonzero(lengths > 0)
    # Rows with similar lengths share a chunk so that padding to the longest row wastes little work.
    order = nonempty[np.argsort(lengths[nonempty], kind="stable")]
    sorted_lengths = lengths[order]
    chunks = []
    for start, end in chunk_bounds(sorted_lengths, dim):
        batch = order[start:end]
        offsets = np.arange(int(sorted_lengths[end - 1]))
        valid = offsets[None, :] < lengths[batch][:, None]
        positions = np.where(valid, rows.indptr[batch][:, None] + offsets[None, :], 0)
        cols = np.where(valid, rows.indices[positions], 0).astype(np.int64)
        slots = np.where(valid, slot_weights[positions], 0.0).astype(np.float32)
        chunks.append(
            Chunk(
                rows=torch.from_numpy(batch).to(device),
                cols=torch.from_numpy(cols).to(device),
                weights=torch.from_numpy(slots).to(device),
            )
        )
    return Plan(n_rows=rows.n_users, chunks=tuple(chunks), sqrt_weights=sqrt_weights)


def solve(
    plan: Plan,
    shared: torch.Tensor,
    Y: torch.Tensor,
    b: torch.Tensor,
    map_chunks: Callable[[Callable[[Chunk], torch.Tensor], Sequence[Chunk]], list[torch.Tensor]] | None = None,
    row_diagonal: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return x with A_u x_u = b_u for every row; rows without nonzeros get x_u = 0 (their b_u is 0).

    row_diagonal (one value per row) is added to the diagonal of each A_u on top of S; map_chunks (default:
    a plain loop) may run the independent chunks on several threads.
    """
    dim = Y.shape[1]

    def solve_chunk(chunk: Chunk) -> torch.Tensor:
        size, width = chunk.cols.shape
        gathered = Y.index_select(0, chunk.cols.reshape(-1)).view(size, width, dim)  # [B, L, d]
        S = shared.expand(size, dim, dim)
        if plan.sqrt_weights:
            scaled = gathered.mul_(chunk.weights.unsqueeze(2))
            A = torch.baddbmm(S, scaled.mT, scaled)
        else:
            A = torch.baddbmm(S, (gathered * chunk.weights.unsqueeze(2)).mT, gathered)
        if row_diagonal is not None:
            A.diagonal(dim1=-2, dim2=-1).add_(row_diagonal[chunk.rows].unsqueeze(1))
        return solve_spd(A, b[chunk.rows])

    solved = (map_chunks or (lambda fn, items: [fn(item) for item in items]))(solve_chunk, plan.chunks)
    X = torch.zeros(plan.n_rows, dim, dtype=Y.dtype, device=Y.device)
    # Scattered on this thread: the chunks' rows are disjoint, but one writer keeps it simple.
    for chunk, x in zip(plan.chunks, solved, strict=True):
        X[chunk.rows] = x
    return X


def solve_spd(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve the batch A x = b by Cholesky; singular systems fall back to least squares."""
    factor, info = torch.linalg.cholesky_ex(A)
    # Two batched triangular solves run several times faster than torch.cholesky_solve on CPU.
    y = torch.linalg.solve_triangular(factor, b.unsqueeze(2), upper=False)
    x: torch.Tensor = torch.linalg.solve_triangular(factor.mT, y, upper=True).squeeze(2)
    failed = info != 0
    if bool(failed.any()):
        # Only reachable without regularisation (l2 = 0) and a rank-deficient A: take the min-norm answer.
        fallback = torch.linalg.lstsq(A[failed].cpu(), b[failed].cpu().unsqueeze(2), driver="gelsd")
        x[failed] = fallback.solution.squeeze(2).to(x)
    return x
