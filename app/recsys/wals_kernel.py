"""The WALS conjugate-gradient half-step as one compiled loop over rows (CPU; numba).

The same mathematics as wals._solve_cg — for every row u, cg_steps CG steps on

    A_u x = b_u,   A_u = S + λ_u I + Σ_{i∈I_u} (c_ui − w0) y_i y_iᵀ,   b_u = Σ_{i∈I_u} c_ui y_i,

warm-started from x_u, with S = w0·YᵀY (+ λI when λ is not per row) — but each pass over a row's
nonzeros loads y_i once for both its dot product and its update, where the torch version runs a sampled
product and then a sparse × dense product (two loads, and an nnz-sized temporary in between). Rows are
spread over threads by numba's prange: one parallel region per half-step, as implicit's Cython loop.
On ml-1m, 10M-interaction planted data (bench/train.py) this is what closes the gap to `implicit`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def cg_half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    c_minus_w0: np.ndarray,
    w0: float,
    Y: np.ndarray,
    shared: np.ndarray,
    row_l2: np.ndarray,
    X: np.ndarray,
    cg_steps: int,
    row_loss: np.ndarray,
) -> None:
    """Update X in place: cg_steps CG steps per row; row_l2 holds λ_u per row (empty: λ is in shared).

    When row_loss is not empty, row_loss[u] receives the row's observed part of the objective at the new x,
    Σ_i (c − w0)(1 − x·y_i)² + w0(1 − 2 x·y_i), from one more pass over the row's nonzeros while they are
    still in cache — cheaper than a separate loss pass over the whole matrix.
    """
    n, d = X.shape
    per_row_l2 = row_l2.shape[0] > 0
    # float32 accumulators keep the loops 8-wide (float64 ones would convert every load).
    zero = np.float32(0.0)
    one = np.float32(1.0)
    w0_32 = np.float32(w0)
    for u in numba.prange(n):
        start, end = indptr[u], indptr[u + 1]
        if start == end:
            # Empty rows have b = 0, so their exact solution is 0.
            for j in range(d):
                X[u, j] = zero
            if row_loss.shape[0] > 0:
                row_loss[u] = 0.0
            continue
        lam = row_l2[u] if per_row_l2 else zero
        x = X[u].copy()
        # r = b − A x, with the b and correction terms in one pass: Σ_i ((c − w0)(1 − x·y_i) + w0) y_i.
        r = np.empty(d, dtype=np.float32)
        for j in range(d):
            acc = zero
            for k in range(d):
                acc += shared[j, k] * x[k]
            r[j] = -acc - lam * x[j]
        for idx in range(start, end):
            y = Y[indices[idx]]
            s = zero
            for j in range(d):
                s += y[j] * x[j]
            coef = c_minus_w0[idx] * (one - s) + w0_32
            for j in range(d):
                r[j] += coef * y[j]
        p = r.copy()
        rs = zero
        for j in range(d):
            rs += r[j] * r[j]
        ap = np.empty(d, dtype=np.float32)
        for step in range(cg_steps):
            for j in range(d):
                acc = zero
                for k in range(d):
                    acc += shared[j, k] * p[k]
                ap[j] = acc + lam * p[j]
            for idx in range(start, end):
                y = Y[indices[idx]]
                s = zero
                for j in range(d):
                    s += y[j] * p[j]
                coef = c_minus_w0[idx] * s
                for j in range(d):
                    ap[j] += coef * y[j]
            pap = zero
            for j in range(d):
                pap += p[j] * ap[j]
            if pap <= zero:
                break
            alpha = rs / pap
            for j in range(d):
                x[j] += alpha * p[j]
            if step == cg_steps - 1:
                break
            rs_new = zero
            for j in range(d):
                r[j] -= alpha * ap[j]
                rs_new += r[j] * r[j]
            if rs_new <= zero:
                break
            beta = rs_new / rs
            for j in range(d):
                p[j] = r[j] + beta * p[j]
            rs = rs_new
        for j in range(d):
            X[u, j] = x[j]
        if row_loss.shape[0] > 0:
            total = 0.0
            for idx in range(start, end):
                y = Y[indices[idx]]
                s = zero
                for j in range(d):
                    s += y[j] * x[j]
                total += c_minus_w0[idx] * (1.0 - s) ** 2 + w0 * (1.0 - 2.0 * s)
            row_loss[u] = total


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def observed_loss(
    indptr: np.ndarray, indices: np.ndarray, c_minus_w0: np.ndarray, w0: float, X: np.ndarray, Y: np.ndarray
) -> float:
    """Σ_observed c(1 − s)² − w0·s² with s = x_u·y_i, as Σ (c − w0)(1 − s)² + w0(1 − 2s), in one pass."""
    n, d = X.shape
    total = 0.0
    for u in numba.prange(n):
        row = 0.0
        for idx in range(indptr[u], indptr[u + 1]):
            y = Y[indices[idx]]
            s = np.float32(0.0)
            for j in range(d):
                s += X[u, j] * y[j]
            row += c_minus_w0[idx] * (1.0 - s) ** 2 + w0 * (1.0 - 2.0 * s)
        total += row
    return total


# Rows handed to a thread at a time: rows differ in length by 1000x (popular items), so static halves of
# the row range leave one thread idle while the other finishes; small chunks are taken dynamically.
ROW_CHUNK = 16


def half_step(
    indptr: np.ndarray,
    indices: np.ndarray,
    c_minus_w0: np.ndarray,
    w0: float,
    Y: np.ndarray,
    shared: np.ndarray,
    row_l2: np.ndarray,
    X: np.ndarray,
    cg_steps: int,
    row_loss: np.ndarray | None = None,
) -> None:
    """cg_half_step with dynamic scheduling of row chunks."""
    loss_out = np.empty(0, dtype=np.float64) if row_loss is None else row_loss
    with numba.parallel_chunksize(ROW_CHUNK):
        cg_half_step(indptr, indices, c_minus_w0, w0, Y, shared, row_l2, X, cg_steps, loss_out)


def loss(
    indptr: np.ndarray, indices: np.ndarray, c_minus_w0: np.ndarray, w0: float, X: np.ndarray, Y: np.ndarray
) -> float:
    """observed_loss with dynamic scheduling of row chunks."""
    with numba.parallel_chunksize(ROW_CHUNK):
        return float(observed_loss(indptr, indices, c_minus_w0, w0, X, Y))


def set_threads(n: int) -> None:
    """Threads for the row loops (at most the cores numba saw at start-up)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


@numba.njit(cache=True, nogil=True)
def transpose(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The transpose of a CSR matrix as (indptr int64, indices int32, values float32), rows ascending.

    A counting sort that allocates its outputs and nothing nnz-sized besides: scipy's CSR → CSC route
    made int64 copies of the indices and a permutation, 200 MB of transient peak at 10M interactions.
    """
    nnz = indices.shape[0]
    t_indptr = np.zeros(n_cols + 1, np.int64)
    for k in range(nnz):
        t_indptr[indices[k] + 1] += 1
    for col in range(n_cols):
        t_indptr[col + 1] += t_indptr[col]
    fill = t_indptr[:-1].copy()
    t_indices = np.empty(nnz, np.int32)
    t_values = np.empty(nnz, np.float32)
    for row in range(indptr.shape[0] - 1):
        for k in range(indptr[row], indptr[row + 1]):
            col = indices[k]
            at = fill[col]
            t_indices[at] = row
            t_values[at] = values[k]
            fill[col] = at + 1
    return t_indptr, t_indices, t_values
