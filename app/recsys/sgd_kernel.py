"""The SGD family's CPU updates as compiled loops (numba): sampling, scores, losses and the row-wise lazy
optimisers of sgd.py's module docstring, without Python or torch per example.

A mini-batch is one pass over its examples, in chunks of _CHUNK: the chunk's negatives are drawn, its
scores taken, and its scores turned into the coefficients ∂ℓ/∂s (bce and bpr in float32 passes that LLVM
vectorises, `_chunk_loss`); then each example's gradients are added to one gradient slot per distinct
table row of the batch (head[row] → slot, opened and zeroed at the row's first touch):

    user row u    Σ_j g_uj v_j + 2λ u       (j: the positive and the negatives of the example)
    item row v_j  g_uj u  (+ 2λ v for the positive)

The table is not written during that pass, so every gradient is read at the batch's starting parameters;
then every distinct row takes one optimiser step with its summed gradient, written straight into the
table (`_step`). That is the torch path's mini-batch step (up to float order: a row's gradient sums in
example order). Variant "sgd" runs the same pieces one example at a time: exactly sequential.

An earlier version chained the batch's (example, slot) entries per row and summed each chain in a second
pass into a staging buffer: a second read of every row, the chain walk, and a copy back. The per-example
libm exp/log1p in float64 (three calls per entry for bce) cost ~60 ns an entry; see docs/sgd-speed.md.

Negatives are drawn by a counter-based generator: draw (slot, attempt) of the example at position p of
the epoch's order hashes (key, p, slot, attempt) with SplitMix64, key being drawn from the run's torch
generator once per epoch. A draw that hits one of the user's positives (a binary search in the CSR row)
is redrawn, up to _ROUNDS times; then one exact draw from the complement follows (the r-th non-positive
for uniform; an inverse-CDF scan over the complement for popularity, uniform when the complement has no
weight), as sampling.py does. Popularity draws use a Vose alias table (O(1) per draw). Hard negatives
are the per_positive best-scoring of hard_candidates such draws, scored in the loop at the batch's
parameters.

In-batch negatives (in_batch, mixed) share the batch's positives: the (B, U) score matrix against the
U distinct positive items (an item c times in the batch counts c times, so the losses equal the ones over
all B) and the two products of the coefficients with the factors are dense matrix products, which
sgd.py leaves to torch's GEMM; `shared_coefficients` does the rest, marking each user's positives in a
per-thread table to mask accidental hits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

LOSSES = {"bce": 0, "mse": 1, "bpr": 2, "softmax": 3}
OPTIMIZERS = {"sgd": 0, "adagrad": 1, "adam": 2}
# Private negative samplers: none, uniform (also mixed's private part), popularity, hard (uniform candidates).
SAMPLERS = {"none": 0, "uniform": 1, "popularity": 2, "hard": 3}
_BCE, _MSE, _BPR, _SOFTMAX = 0, 1, 2, 3
_SGD, _ADAGRAD, _ADAM = 0, 1, 2
_NONE, _UNIFORM, _POPULARITY, _HARD = 0, 1, 2, 3

# Rejection rounds before the exact draw from the complement of the user's positives.
_ROUNDS = 16
# Examples whose loss is taken in one vectorised pass before their gradients are added.
_CHUNK = 32
# Largest positives bit set kept for membership tests (bytes); above it, a binary search in the CSR row.
_BITS_LIMIT = 64 * 2**20
_ADAGRAD_EPS = 1e-10
_B1, _B2, _ADAM_EPS = 0.9, 0.999, 1e-8
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_SLOTS = np.uint64(1 << 24)  # draws per example (slot × _ROUNDS + attempt) stay below this
# Each entry point runs its loop as the body of a one-iteration prange: numba compiles a parfor body as a
# separate function whose array arguments LLVM may assume distinct, and the update loops then vectorise
# (2.4x faster than the same loop in a plain njit function). Callers keep numba at one thread
# (one_thread()), so the "parallel" region is the calling thread itself; parallelism is Hogwild threads.
# Helpers of the hot loops are inlined (inline="always"): a call that passes arrays increments and decrements
# each one's reference count atomically, which cost more than the draw itself (500 ns for 4 draws, 50 inlined).


# ----------------------------------------------------------------------------------------------- sampling


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@numba.njit(cache=True, nogil=True, inline="always")
def uniform01(key: np.uint64, example: int, draw: int) -> float:
    """The draw-th uniform [0, 1) number of an example: a pure function of (key, example, draw)."""
    h = _mix(key ^ _mix(np.uint64(example) * _SLOTS + np.uint64(draw) + _GOLDEN))
    return float(h >> _S11) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True, inline="always")
def is_positive(indptr: np.ndarray, indices: np.ndarray, bits: np.ndarray, user: int, item: int) -> bool:
    """Whether item is in the user's (sorted) CSR row: one bit of bits[user] when given, else a binary search."""
    if bits.shape[0] > 0:
        # One load where the search takes ~log2(row length) dependent ones, each a likely cache miss.
        return bool((bits[user, item >> 6] >> np.uint64(item & 63)) & np.uint64(1) != 0)
    lo, hi = indptr[user], indptr[user + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v < item:
            lo = mid + 1
        elif v > item:
            hi = mid
        else:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _exact(
    u: float, user: int, sampler: int, indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, total: float
) -> int:
    """One draw from Q_u, the sampler's law restricted to the complement of the user's positives."""
    start, end = indptr[user], indptr[user + 1]
    n_items = weights.shape[0]
    if sampler == _POPULARITY:
        mass = total
        for p in range(start, end):
            mass -= weights[indices[p]]
        # Below this the complement's mass is rounding noise: uniform over the complement, as sampling.py.
        if mass > 1e-9 * total:
            t = u * mass
            acc = 0.0
            p = start
            last = -1
            for item in range(n_items):
                if p < end and indices[p] == item:
                    p += 1
                    continue
                if weights[item] > 0.0:
                    acc += weights[item]
                    last = item
                    if acc > t:
                        return item
            if last >= 0:
                return last
    free = n_items - (end - start)
    r = min(int(u * free), free - 1)
    item = r
    # The r-th item that is not a positive: step over every positive at or below the candidate.
    for p in range(start, end):
        if indices[p] <= item:
            item += 1
        else:
            break
    return int(item)


@numba.njit(cache=True, nogil=True, inline="always")
def draw_negative(
    key: np.uint64,
    example: int,
    slot: int,
    user: int,
    sampler: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    bits: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    weights: np.ndarray,
    total: float,
) -> int:
    """The slot-th negative of an example: a draw of the sampler that is not a positive of the user."""
    n_items = prob.shape[0]
    base = slot * (_ROUNDS + 1)
    for attempt in range(_ROUNDS):
        x = uniform01(key, example, base + attempt) * n_items
        item = min(int(x), n_items - 1)
        if sampler == _POPULARITY and x - item >= prob[item]:
            item = alias[item]
        if not is_positive(indptr, indices, bits, user, item):
            return int(item)
    return _exact(uniform01(key, example, base + _ROUNDS), user, sampler, indptr, indices, weights, total)


def positive_bits(indptr: np.ndarray, indices: np.ndarray, n_items: int) -> np.ndarray:
    """A (n_users, ⌈n_items/64⌉) uint64 bit set of the positives, or (0, 0) above _BITS_LIMIT bytes."""
    words = (n_items + 63) // 64
    n_users = indptr.shape[0] - 1
    if n_users * words * 8 > _BITS_LIMIT:
        return np.zeros((0, 0), dtype=np.uint64)
    bits = np.zeros((n_users, words), dtype=np.uint64)
    _fill_bits(indptr, indices, bits)
    return bits


@numba.njit(cache=True, nogil=True)
def _fill_bits(indptr: np.ndarray, indices: np.ndarray, bits: np.ndarray) -> None:
    for user in range(indptr.shape[0] - 1):
        for p in range(indptr[user], indptr[user + 1]):
            item = indices[p]
            bits[user, item >> 6] |= np.uint64(1) << np.uint64(item & 63)


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table of a weight vector: draw i uniformly, keep it with prob[i], else take alias[i]."""
    n = weights.shape[0]
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    total = float(weights.sum())
    if n == 0 or total <= 0.0:
        return prob, alias
    scaled = weights.astype(np.float64) * (n / total)
    _fill_alias(scaled, prob, alias)
    return prob, alias


@numba.njit(cache=True, nogil=True)
def _fill_alias(scaled: np.ndarray, prob: np.ndarray, alias: np.ndarray) -> None:
    n = scaled.shape[0]
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    n_small = n_large = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[n_small] = i
            n_small += 1
        else:
            large[n_large] = i
            n_large += 1
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = small[n_small]
        n_large -= 1
        g = large[n_large]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        if scaled[g] < 1.0:
            small[n_small] = g
            n_small += 1
        else:
            large[n_large] = g
            n_large += 1
    # What is left is 1 up to rounding.
    for q in range(n_large):
        prob[large[q]] = 1.0
    for q in range(n_small):
        prob[small[q]] = 1.0


# ----------------------------------------------------------------------------------------------- losses


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
# e^r = Σ r^i / i!, Horner from i = 5 down to 0 after the r^6/720 term.
_TAYLOR = (
    np.float32(1.0 / 120.0),
    np.float32(1.0 / 24.0),
    np.float32(1.0 / 6.0),
    np.float32(0.5),
    np.float32(1.0),
    np.float32(1.0),
)
# 2 atanh(w)/(2w) = Σ w^2i/(2i+1): Horner from i = 6 down to 0 after the w¹⁴/15 term.
_ATANH = tuple(np.float32(1.0 / (2 * i + 1)) for i in range(6, -1, -1))


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _exp_parts(x: np.ndarray, lo: int, hi: int, p: np.ndarray, ibuf: np.ndarray) -> None:
    """For x[lo:hi] ≤ 0: p ← e^r and ibuf ← the float bits of 2^m, e^x = p · 2^m (see _exp_row; x < −70 → −70)."""
    for f in range(lo, hi):
        a = max(x[f], np.float32(-70.0))
        m = np.floor(a * _LOG2E + np.float32(0.5))
        r = a - m * _LN2_HI - m * _LN2_LO
        q = np.float32(1.0 / 720.0)
        for c in _TAYLOR:
            q = q * r + c
        p[f] = q
        ibuf[f] = (np.int32(m) + np.int32(127)) << np.int32(23)


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _logistic(x: np.ndarray, lo: int, hi: int, t: np.ndarray, ibuf: np.ndarray, fbuf: np.ndarray) -> None:
    """x[lo:hi] ← σ(x) and t[lo:hi] ← softplus(x) = log(1 + eˣ), in float32 passes that LLVM vectorises.

    With z = e^−|x| (one exp): σ(x) = 1/(1+z) for x ≥ 0, z/(1+z) below; softplus(x) = max(x, 0) + log1p(z),
    log1p(z) = 2 atanh(z/(2+z)) by its odd series to w¹⁵ (w ≤ 1/3: error < 2e-9, and exact to float32
    for tiny z). A libm exp and log1p per entry in float64 (three calls with σ) cost ~60 ns an entry.
    """
    for f in range(lo, hi):
        t[f] = -abs(x[f])
    _exp_parts(t, lo, hi, t, ibuf)
    for f in range(lo, hi):
        z = t[f] * fbuf[f]
        v = x[f]
        w = z / (np.float32(2.0) + z)
        w2 = w * w
        series = np.float32(1.0 / 15.0)
        for c in _ATANH:
            series = series * w2 + c
        t[f] = max(v, np.float32(0.0)) + np.float32(2.0) * w * series
        x[f] = (np.float32(1.0) if v >= 0.0 else z) / (np.float32(1.0) + z)


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _chunk_loss(
    loss: int,
    c: np.ndarray,
    flat: np.ndarray,
    e0: int,
    e1: int,
    rows: np.ndarray,
    log_q: np.ndarray,
    t: np.ndarray,
    ibuf: np.ndarray,
    fbuf: np.ndarray,
) -> float:
    """_private_loss over examples e0..e1−1 (flat: c's buffer as one vector); return their Σ ℓ.

    bce and bpr take vectorised passes over the chunk's entries (_logistic); mse and softmax go per example.
    """
    width = c.shape[1]
    lo, hi = e0 * width, e1 * width
    total = 0.0
    if loss == _BCE:
        # ℓ = softplus(−s_pos) + Σ softplus(s_neg): flip the positive, and its ∂ℓ/∂s = −σ(−s_pos) back after.
        for e in range(e0, e1):
            c[e, 0] = -c[e, 0]
        _logistic(flat, lo, hi, t, ibuf, fbuf)
        for e in range(e0, e1):
            c[e, 0] = -c[e, 0]
        for f in range(lo, hi):
            total += t[f]
        return total
    if loss == _BPR and width > 1:
        k = width - 1
        for e in range(e0, e1):
            sp = c[e, 0]
            c[e, 0] = 0.0  # computed along, then replaced
            for j in range(1, width):
                c[e, j] = c[e, j] - sp
        _logistic(flat, lo, hi, t, ibuf, fbuf)
        inverse = np.float32(1.0 / k)
        for e in range(e0, e1):
            part = 0.0
            g_pos = np.float32(0.0)
            for j in range(1, width):
                part += t[e * width + j]
                g = c[e, j] * inverse
                c[e, j] = g
                g_pos -= g
            c[e, 0] = g_pos
            total += part / k
        return total
    for e in range(e0, e1):
        total += _private_loss(loss, c, e, rows, log_q)
    return total


@numba.njit(cache=True, nogil=True, inline="always")
def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(cache=True, nogil=True, inline="always")
def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@numba.njit(cache=True, nogil=True, inline="always")
def _private_loss(loss: int, c: np.ndarray, e: int, rows: np.ndarray, log_q: np.ndarray) -> float:
    """Turn the scores c[e] = [s_pos, s_neg…] of example e into ∂ℓ/∂s in place; return ℓ.

    rows[e] = [user row, positive, negatives…]; log_q (empty: no correction) is subtracted from softmax logits.
    """
    width = c.shape[1]
    if loss == _BCE:
        s = float(c[e, 0])
        total = _softplus(-s)
        c[e, 0] = -_sigmoid(-s)
        for j in range(1, width):
            s = float(c[e, j])
            total += _softplus(s)
            c[e, j] = _sigmoid(s)
        return total
    if loss == _MSE:
        r = float(c[e, 0]) - 1.0
        total = r * r
        c[e, 0] = 2.0 * r
        for j in range(1, width):
            s = float(c[e, j])
            total += s * s
            c[e, j] = 2.0 * s
        return total
    if loss == _BPR:
        k = width - 1
        if k == 0:
            c[e, 0] = 0.0
            return 0.0
        sp = float(c[e, 0])
        total = 0.0
        g_pos = 0.0
        for j in range(1, width):
            x = float(c[e, j]) - sp
            total += _softplus(x)
            g = _sigmoid(x) / k
            c[e, j] = g
            g_pos -= g
        c[e, 0] = g_pos
        return float(total / k)
    correct = log_q.shape[0] > 0
    peak = -np.inf
    for j in range(width):
        z = float(c[e, j])
        if correct:
            z -= log_q[rows[e, 1 + j]]
        c[e, j] = z
        peak = max(peak, z)
    z_pos = float(c[e, 0])
    total = 0.0
    for j in range(width):
        x = math.exp(float(c[e, j]) - peak)
        c[e, j] = x
        total += x
    out = math.log(total) + peak - z_pos
    for j in range(width):
        c[e, j] = c[e, j] / total
    c[e, 0] -= 1.0
    return out


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _dot(table: np.ndarray, a: int, b: int) -> float:
    """table[a]·table[b], indexing the 2-D array: a row view per call costs two atomic refcount updates."""
    acc = np.float32(0.0)
    for j in range(table.shape[1]):
        acc += table[a, j] * table[b, j]
    return float(acc)


@numba.njit(cache=True, nogil=True, inline="always")
def _example(
    table: np.ndarray,
    e: int,
    example: int,
    key: np.uint64,
    sampler: int,
    k: int,
    n_candidates: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    bits: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    weights: np.ndarray,
    total: float,
    n_items: int,
    rows: np.ndarray,
    scores: np.ndarray,
    best: np.ndarray,
    score: bool = True,
) -> None:
    """Draw example e's private negatives into rows[e, 2:] and (when score) put its scores in scores[e]."""
    user = rows[e, 0] - n_items
    u = rows[e, 0]
    if sampler == _HARD:
        # Keep the k best-scoring candidates, best first (insertion into a sorted list of k).
        for j in range(k):
            best[e, j] = -np.inf
        for c in range(n_candidates):
            item = draw_negative(key, example, c, user, _UNIFORM, indptr, indices, bits, prob, alias, weights, total)
            s = _dot(table, item, u)
            if s <= best[e, k - 1]:
                continue
            j = k - 1
            while j > 0 and best[e, j - 1] < s:
                best[e, j] = best[e, j - 1]
                rows[e, 2 + j] = rows[e, 1 + j]
                j -= 1
            best[e, j] = s
            rows[e, 2 + j] = item
    elif sampler != _NONE:
        for j in range(k):
            rows[e, 2 + j] = draw_negative(
                key, example, j, user, sampler, indptr, indices, bits, prob, alias, weights, total
            )
    if score:
        _scores(table, rows, scores, e)


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _scores(table: np.ndarray, rows: np.ndarray, scores: np.ndarray, e: int) -> None:
    """scores[e, j] = u·v_j for the positive and the negatives of example e."""
    u = rows[e, 0]
    for j in range(rows.shape[1] - 1):
        scores[e, j] = _dot(table, u, rows[e, 1 + j])


# ----------------------------------------------------------------------------------------------- updates


@numba.njit(cache=True, nogil=True, inline="always")
def _open(r: int, head: np.ndarray, uniq: np.ndarray, acc: np.ndarray, n_unique: int) -> tuple[int, int]:
    """Row r's gradient slot in this batch, zeroed when r is first touched; (slot, distinct rows so far)."""
    q = head[r]
    if q >= 0:
        return q, n_unique
    head[r] = n_unique
    uniq[n_unique] = r
    for j in range(acc.shape[1]):
        acc[n_unique, j] = 0.0
    return n_unique, n_unique + 1


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _accumulate(
    table: np.ndarray,
    rows: np.ndarray,
    coefs: np.ndarray,
    e: int,
    extra_user: np.ndarray,
    l2x2: np.float32,
    head: np.ndarray,
    uniq: np.ndarray,
    acc: np.ndarray,
    n_unique: int,
) -> int:
    """Add example e's gradients (at the table's current values) to its rows' slots; return the distinct count.

    rows[e] = [user row, positive, negatives…], coefs[e] = ∂ℓ/∂s of the positive and negatives; extra_user
    (empty, or a dense gradient of e's user row) is added too, and 2λθ on the positive pair's rows.
    """
    width = rows.shape[1]
    d = table.shape[1]
    u = rows[e, 0]
    su, n_unique = _open(u, head, uniq, acc, n_unique)
    # 2-D indexing throughout: row views would update the arrays' refcounts atomically, from every thread.
    # One store per loop: with several, LLVM's alias checks fail and the loops stay scalar.
    for jj in range(width - 1):
        v = rows[e, 1 + jj]
        c = coefs[e, jj]
        sv, n_unique = _open(v, head, uniq, acc, n_unique)
        for j in range(d):
            acc[su, j] += c * table[v, j]
        for j in range(d):
            acc[sv, j] += c * table[u, j]
    if extra_user.shape[0] > 0:
        for j in range(d):
            acc[su, j] += extra_user[e, j]
    if l2x2 > 0.0:
        p = rows[e, 1]
        sp = head[p]
        for j in range(d):
            acc[su, j] += l2x2 * table[u, j]
        for j in range(d):
            acc[sp, j] += l2x2 * table[p, j]
    return n_unique


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _step(
    table: np.ndarray,
    n_unique: int,
    uniq: np.ndarray,
    acc: np.ndarray,
    head: np.ndarray,
    optimizer: int,
    lr: np.float32,
    state0: np.ndarray,
    state1: np.ndarray,
    steps: np.ndarray,
) -> None:
    """One optimiser step of every distinct row uniq[q] with its summed gradient acc[q]; empties the slots."""
    d = table.shape[1]
    for q in range(n_unique):
        r = uniq[q]
        head[r] = -1
        if optimizer == _SGD:
            for j in range(d):
                table[r, j] = table[r, j] - lr * acc[q, j]
        elif optimizer == _ADAGRAD:
            for j in range(d):
                state0[r, j] += acc[q, j] * acc[q, j]
            for j in range(d):
                table[r, j] = table[r, j] - lr * acc[q, j] / (np.sqrt(state0[r, j]) + np.float32(_ADAGRAD_EPS))
        else:
            t = steps[r] + 1.0
            steps[r] = t
            c1 = np.float32(1.0 / (1.0 - _B1**t))
            c2 = np.float32(1.0 / (1.0 - _B2**t))
            for j in range(d):
                state0[r, j] = np.float32(_B1) * state0[r, j] + np.float32(1.0 - _B1) * acc[q, j]
            for j in range(d):
                state1[r, j] = np.float32(_B2) * state1[r, j] + np.float32(1.0 - _B2) * acc[q, j] * acc[q, j]
            for j in range(d):
                m_hat = state0[r, j] * c1
                table[r, j] = table[r, j] - lr * m_hat / (np.sqrt(state1[r, j] * c2) + np.float32(_ADAM_EPS))


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def apply_batch(
    table: np.ndarray,
    rows: np.ndarray,
    coefs: np.ndarray,
    n_examples: int,
    extra_user: np.ndarray,
    shared: np.ndarray,
    extra_shared: np.ndarray,
    head: np.ndarray,
    uniq: np.ndarray,
    acc: np.ndarray,
    optimizer: int,
    lr: float,
    l2: float,
    state0: np.ndarray,
    state1: np.ndarray,
    steps: np.ndarray,
) -> None:
    """One optimiser step per distinct row of the batch from gradients at the batch's starting parameters.

    rows (≥ n_examples, 1 + width) = [user row, positive, private negatives…], coefs = ∂ℓ/∂s of the
    positive and negatives; extra_user (n_examples, d) and extra_shared (S, d) are dense gradients of the
    user rows and of the shared rows `shared` (empty when there are none). head, uniq, acc: work_buffers'.
    """
    l2x2 = np.float32(2.0 * l2)
    d = table.shape[1]
    for _ in numba.prange(1):  # one gufunc: see the note on prange(1) above
        n_unique = 0
        for e in range(n_examples):
            n_unique = _accumulate(table, rows, coefs, e, extra_user, l2x2, head, uniq, acc, n_unique)
        for s in range(shared.shape[0]):
            q, n_unique = _open(shared[s], head, uniq, acc, n_unique)
            for j in range(d):
                acc[q, j] += extra_shared[s, j]
        _step(table, n_unique, uniq, acc, head, optimizer, np.float32(lr), state0, state1, steps)


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def private_batches(
    table: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    first: int,
    batch_size: int,
    key: np.uint64,
    sampler: int,
    k: int,
    n_candidates: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    bits: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    weights: np.ndarray,
    total: float,
    loss: int,
    log_q: np.ndarray,
    optimizer: int,
    lr: float,
    l2: float,
    state0: np.ndarray,
    state1: np.ndarray,
    steps: np.ndarray,
    work: tuple[np.ndarray, ...],
    part: int,
    parts: int,
) -> float:
    """Mini-batches of private negatives (none, uniform, popularity, hard) over the given examples; Σ ℓ.

    users/items are the examples in epoch order from position `first`; batches start at multiples of
    batch_size from the first example given, and this call takes batches part, part + parts, … of them
    (each Hogwild thread one part, with its own work buffers). log_q: empty, or the softmax correction.
    """
    rows, scores, best, losses, head, uniq, acc, no_extra, no_shared, t, ibuf = work
    n_items = prob.shape[0]
    n = users.shape[0]
    lr32, l2x2 = np.float32(lr), np.float32(2.0 * l2)
    total_loss = 0.0
    for _ in numba.prange(1):  # one gufunc: see the note on prange(1) above
        flat, fbuf = scores.reshape(-1), ibuf.view(np.float32)
        for start in range(part * batch_size, n, parts * batch_size):
            b = min(batch_size, n - start)
            n_unique = 0
            # Chunks of _CHUNK examples: draws and scores, the loss in vector passes, then each example's
            # gradients added to its rows' slots while the rows are still in cache. The table changes only
            # in _step, so every gradient is taken at the batch's starting parameters.
            for e0 in range(0, b, _CHUNK):
                e1 = min(e0 + _CHUNK, b)
                # Each pass over the chunk has independent memory accesses across examples (bit-set words, table
                # rows), which the core overlaps; per example, every draw and score waited on a cache miss.
                for e in range(e0, e1):
                    rows[e, 0] = users[start + e] + n_items
                    rows[e, 1] = items[start + e]
                    _example(
                        table, e, first + start + e, key, sampler, k, n_candidates, indptr, indices, bits, prob,
                        alias, weights, total, n_items, rows, scores, best, False,
                    )  # fmt: skip
                for e in range(e0, e1):
                    _scores(table, rows, scores, e)
                total_loss += _chunk_loss(loss, scores, flat, e0, e1, rows, log_q, t, ibuf, fbuf)
                for e in range(e0, e1):
                    n_unique = _accumulate(table, rows, scores, e, no_extra, l2x2, head, uniq, acc, n_unique)
            _step(table, n_unique, uniq, acc, head, optimizer, lr32, state0, state1, steps)
    return total_loss


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def sequential_examples(
    table: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    first: int,
    key: np.uint64,
    sampler: int,
    k: int,
    n_candidates: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    bits: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    weights: np.ndarray,
    total: float,
    loss: int,
    log_q: np.ndarray,
    optimizer: int,
    lr: float,
    l2: float,
    state0: np.ndarray,
    state1: np.ndarray,
    steps: np.ndarray,
    work: tuple[np.ndarray, ...],
) -> float:
    """Variant "sgd": one update per example, in order, on one thread (exactly sequential); Σ ℓ."""
    rows, scores, best, losses, head, uniq, acc, no_extra, no_shared, t, ibuf = work
    n_items = prob.shape[0]
    lr32, l2x2 = np.float32(lr), np.float32(2.0 * l2)
    total_loss = 0.0
    for _ in numba.prange(1):  # one gufunc: see the note on prange(1) above
        flat, fbuf = scores.reshape(-1), ibuf.view(np.float32)
        for e in range(users.shape[0]):
            rows[0, 0] = users[e] + n_items
            rows[0, 1] = items[e]
            _example(
                table, 0, first + e, key, sampler, k, n_candidates, indptr, indices, bits, prob, alias, weights, total,
                n_items, rows, scores, best,
            )  # fmt: skip
            total_loss += _chunk_loss(loss, scores, flat, 0, 1, rows, log_q, t, ibuf, fbuf)
            n_unique = _accumulate(table, rows, scores, 0, no_extra, l2x2, head, uniq, acc, 0)
            _step(table, n_unique, uniq, acc, head, optimizer, lr32, state0, state1, steps)
    return total_loss


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def shared_coefficients(
    table: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    first: int,
    key: np.uint64,
    k: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    bits: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    weights: np.ndarray,
    total: float,
    shared: np.ndarray,
    counts: np.ndarray,
    s_shared: np.ndarray,
    loss: int,
    log_q: np.ndarray,
    rows: np.ndarray,
    scores: np.ndarray,
    best: np.ndarray,
    losses: np.ndarray,
    mark: np.ndarray,
) -> None:
    """One batch with shared negatives: the distinct batch positives `shared` (counts[s] copies each), plus
    k private uniform ones per example (mixed). s_shared (B, S) holds u·v_s on entry and ∂ℓ/∂s on return
    (0 where shared[s] is a positive of the row's user), scores[:, :k+1] the private ∂ℓ/∂s, losses ℓ;
    mark is an all-False bool scratch of n_items (left all False)."""
    n_items = prob.shape[0]
    b = users.shape[0]
    n_shared = shared.shape[0]
    correct = log_q.shape[0] > 0
    for _ in numba.prange(1):  # one gufunc: see the note on prange(1) above
        for e in range(b):
            rows[e, 0] = users[e] + n_items
            rows[e, 1] = items[e]
            _example(
                table, e, first + e, key, _UNIFORM if k > 0 else _NONE, k, 0, indptr, indices, bits, prob, alias,
                weights, total, n_items, rows, scores, best,
            )  # fmt: skip
            user = users[e]
            for p in range(indptr[user], indptr[user + 1]):
                mark[indices[p]] = True
            width = k + 1
            out = 0.0
            if loss in (_BCE, _MSE):
                out = _private_loss(loss, scores, e, rows, log_q)
                for q in range(n_shared):
                    if mark[shared[q]]:
                        s_shared[e, q] = 0.0
                        continue
                    x = float(s_shared[e, q])
                    if loss == _BCE:
                        out += counts[q] * _softplus(x)
                        s_shared[e, q] = counts[q] * _sigmoid(x)
                    else:
                        out += counts[q] * x * x
                        s_shared[e, q] = counts[q] * 2.0 * x
            elif loss == _BPR:
                n_neg = float(k)
                for q in range(n_shared):
                    if not mark[shared[q]]:
                        n_neg += counts[q]
                if n_neg == 0.0:
                    scores[e, 0] = 0.0
                    for q in range(n_shared):
                        s_shared[e, q] = 0.0
                else:
                    sp = float(scores[e, 0])
                    g_pos = 0.0
                    for j in range(1, width):
                        x = float(scores[e, j]) - sp
                        out += _softplus(x)
                        g = _sigmoid(x) / n_neg
                        scores[e, j] = g
                        g_pos -= g
                    for q in range(n_shared):
                        if mark[shared[q]]:
                            s_shared[e, q] = 0.0
                            continue
                        x = float(s_shared[e, q]) - sp
                        out += counts[q] * _softplus(x)
                        g = counts[q] * _sigmoid(x) / n_neg
                        s_shared[e, q] = g
                        g_pos -= g
                    scores[e, 0] = g_pos
                    out /= n_neg
            else:
                peak = -np.inf
                for j in range(width):
                    z = float(scores[e, j])
                    if correct:
                        z -= log_q[rows[e, 1 + j]]
                    scores[e, j] = z
                    peak = max(peak, z)
                for q in range(n_shared):
                    if not mark[shared[q]]:
                        z = float(s_shared[e, q])
                        if correct:
                            z -= log_q[shared[q]]
                        s_shared[e, q] = z
                        peak = max(peak, z)
                z_pos = float(scores[e, 0])
                denominator = 0.0
                for j in range(width):
                    x = math.exp(float(scores[e, j]) - peak)
                    scores[e, j] = x
                    denominator += x
                for q in range(n_shared):
                    if mark[shared[q]]:
                        s_shared[e, q] = 0.0
                    else:
                        x = counts[q] * math.exp(float(s_shared[e, q]) - peak)
                        s_shared[e, q] = x
                        denominator += x
                out = math.log(denominator) + peak - z_pos
                for j in range(width):
                    scores[e, j] = scores[e, j] / denominator
                scores[e, 0] -= 1.0
                for q in range(n_shared):
                    s_shared[e, q] = s_shared[e, q] / denominator
            losses[e] = out
            for p in range(indptr[user], indptr[user + 1]):
                mark[indices[p]] = False


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _exp_row(s: np.ndarray, e: int, n: int, peak: np.float32, ibuf: np.ndarray, fbuf: np.ndarray) -> float:
    """s[e, :n] ← exp(s[e, :n] − peak) for arguments ≤ 0; return the row's sum.

    math.exp is a scalar libm call per element (numba has no vector exp without SVML), which made the
    (B, U) softmax cost more than its GEMMs; this one vectorises: m = round(x·log2 e), r = x − m·ln 2 in
    two parts (Cody–Waite), e^r by its degree-6 Taylor polynomial (|r| ≤ ln2/2: error < 2e-7), 2^m by
    writing m + 127 into a float's exponent bits (ibuf and its float view fbuf). Arguments below −70 give
    e^−70 ≈ 4e-31 instead of less: never 0, and never a denormal (slow) once divided by a softmax's sum.
    """
    for q in range(n):
        x = max(s[e, q] - peak, np.float32(-70.0))
        m = np.floor(x * _LOG2E + np.float32(0.5))
        r = x - m * _LN2_HI - m * _LN2_LO
        p = np.float32(1.0 / 720.0)
        for c in _TAYLOR:
            p = p * r + c
        s[e, q] = p
        ibuf[q] = (np.int32(m) + np.int32(127)) << np.int32(23)
    total = np.float32(0.0)
    for q in range(n):
        v = s[e, q] * fbuf[q]
        s[e, q] = v
        total += v
    return float(total)


# Added to an accidental hit's logit: it drops out of the softmax (its e^z clamps to e^−70, as _exp_row says). Finite,
# since fastmath lets LLVM assume no infinities.
_HIT = np.float32(-1e30)


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def shared_softmax(
    table: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    first: int,
    key: np.uint64,
    k: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    bits: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    weights: np.ndarray,
    total: float,
    shared: np.ndarray,
    counts: np.ndarray,
    s_shared: np.ndarray,
    log_q: np.ndarray,
    rows: np.ndarray,
    scores: np.ndarray,
    best: np.ndarray,
    losses: np.ndarray,
    slot: np.ndarray,
    ibuf: np.ndarray,
) -> None:
    """shared_coefficients for the sampled softmax, in vectorised passes over each row of s_shared.

    slot is an all −1 int64 scratch of n_items (left so); ibuf an int32 scratch of at least len(shared).
    Accidental hits are found from the user's positives, not by testing every column, and without a branch:
    each positive writes _HIT into hit[slot[item] + 1], whose cell 0 takes the items outside the batch. The
    branch (taken for ~1 positive in 5 on ml-1m, so mispredicted) made this loop 60 % of the pass.
    """
    n_items = prob.shape[0]
    b = users.shape[0]
    n_shared = shared.shape[0]
    correct = log_q.shape[0] > 0
    fbuf = ibuf.view(np.float32)
    for _ in numba.prange(1):  # one gufunc: see the note on prange(1) above
        offset = np.empty(n_shared, dtype=np.float32)
        hit = np.zeros(n_shared + 1, dtype=np.float32)  # left all 0 after each row
        for q in range(n_shared):
            slot[shared[q]] = q
            # counts[q] copies of the item: e^{z + log c} = c·e^z.
            offset[q] = math.log(counts[q]) - (log_q[shared[q]] if correct else 0.0)
        for e in range(b):
            rows[e, 0] = users[e] + n_items
            rows[e, 1] = items[e]
            _example(
                table, e, first + e, key, _UNIFORM if k > 0 else _NONE, k, 0, indptr, indices, bits, prob, alias,
                weights, total, n_items, rows, scores, best,
            )  # fmt: skip
            user = users[e]
            peak = np.float32(-np.inf)
            for j in range(k + 1):
                z = scores[e, j] - (log_q[rows[e, 1 + j]] if correct else np.float32(0.0))
                scores[e, j] = z
                peak = max(peak, z)
            z_pos = scores[e, 0]
            for p in range(indptr[user], indptr[user + 1]):
                hit[slot[indices[p]] + 1] = _HIT
            for q in range(n_shared):
                z = s_shared[e, q] + offset[q] + hit[q + 1]
                hit[q + 1] = np.float32(0.0)
                s_shared[e, q] = z
                peak = max(peak, z)
            denominator = _exp_row(s_shared, e, n_shared, peak, ibuf, fbuf)
            for j in range(k + 1):
                x = math.exp(float(scores[e, j] - peak))
                scores[e, j] = x
                denominator += x
            inverse = np.float32(1.0 / denominator)
            # Accidental hits (below −1e29) leave e^−70/denominator, below 1e-30: no second pass to zero them.
            for q in range(n_shared):
                s_shared[e, q] *= inverse
            for j in range(k + 1):
                scores[e, j] = scores[e, j] / denominator
            scores[e, 0] -= 1.0
            losses[e] = math.log(denominator) + peak - z_pos
        for q in range(n_shared):
            slot[shared[q]] = -1


@contextmanager
def one_thread() -> Iterator[None]:
    """Keep numba's parallel regions on the calling thread (numba's thread count is per thread)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def work_buffers(
    n_rows: int, batch: int, k: int, n_candidates: int, dim: int, n_shared: int = 0
) -> tuple[np.ndarray, ...]:
    """Scratch arrays of one batch: rows, scores, hard's best scores, losses, each table row's gradient slot
    (all −1 between batches), the distinct rows and their gradients, two empty arrays (no dense extra
    gradients, no shared rows), and the loss passes' float32 and int32 scratch."""
    width = 2 + k
    entries = min(batch * width + n_shared, n_rows)
    return (
        np.zeros((batch, width), dtype=np.int64),
        np.zeros((batch, width - 1), dtype=np.float32),
        np.zeros((batch, max(k, 1)), dtype=np.float32),
        np.zeros(batch, dtype=np.float64),
        np.full(n_rows, -1, dtype=np.int64),
        np.empty(entries, dtype=np.int64),
        np.empty((entries, dim), dtype=np.float32),
        np.zeros((0, dim), dtype=np.float32),
        np.zeros(0, dtype=np.int64),
        np.zeros(batch * (width - 1), dtype=np.float32),
        np.zeros(batch * (width - 1), dtype=np.int32),
    )
