"""Negative samplers for SGD matrix factorisation (vectorised torch, seeded by a torch.Generator).

With N items, K = per_positive, item training counts c_j (interactions, weights ignored), nnz
interactions and a batch of B positives, one drawn negative follows Q (before rejection):

    uniform      Q(j) = 1/N
    popularity   Q(j) = c_j^β / Σ_k c_k^β                      (β = popularity_power)
    in_batch     Q(j) = c_j / nnz                              (a batch positive is a random interaction)
    mixed        Q(j) = (B·c_j/nnz + K/N) / (B + K)            (B in-batch and K uniform per positive)
    hard         candidates ~ uniform; the K kept depend on the model, so no Q applies (log_q: uniform)

uniform, popularity, hard candidates and the uniform part of mixed never return a positive P_u of the
user: a draw that hits one is redrawn, so a returned negative of user u follows

    Q_u(j) = Q(j) / (1 − Σ_{p∈P_u} Q(p))   for j ∉ P_u, else 0.

Redrawing takes a few vectorised rounds; draws still rejected after them are taken exactly from Q_u by
inverse-CDF bisection over the complement of P_u (prefix sums of Q over all items minus over P_u). If
P_u holds all of popularity's mass (only never-seen items remain), those users fall back to uniform
over their complement. in_batch negatives are never redrawn: the batch positives are shared by every
row, and the (row, item) pairs that are positives of the row's user ("accidental hits", including the
row's own positive) are marked invalid instead.

logQ correction (Yi et al., RecSys 2019) subtracts log Q(j) from every sampled-softmax logit, the
positive's included; it is applied for popularity, in_batch and mixed (uniform's is a constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.recsys.interactions import Interactions
from app.recsys.sgd_config import CORRECTABLE, IN_BATCH, PER_POSITIVE, NegativeConfig

# Redraw rounds before the exact complement draw; each round keeps only still-rejected draws.
_REJECTION_ROUNDS = 4
# (user, item) membership uses a dense bool table up to this many cells (bytes), sorted keys above it.
_DENSE_CELLS = 2**26


@dataclass(frozen=True, eq=False)
class Negatives:
    """The negatives of one batch of B positives."""

    items: torch.Tensor  # int64 (B, K): negatives private to each positive; K = 0 when there are none
    shared: torch.Tensor  # int64 (S,): negatives shared by every row (in-batch: the batch positives)
    shared_valid: torch.Tensor  # bool (B, S): False where shared[s] is a positive of row b's user


class PositiveSet:
    """Vectorised membership test for (user, item) pairs of a training matrix."""

    def __init__(self, train: Interactions, device: torch.device) -> None:
        self.n_items = train.n_items
        keys = train.row_users() * train.n_items + train.indices.astype(np.int64)  # CSR order: already sorted
        self._dense: torch.Tensor | None = None
        self._keys = torch.from_numpy(keys).to(device)
        if train.n_users * train.n_items <= _DENSE_CELLS:
            # A one-byte-per-cell table turns the test into one gather, much cheaper than a binary search.
            dense = torch.zeros(train.n_users * train.n_items, dtype=torch.bool, device=device)
            dense[self._keys] = True
            self._dense = dense

    def contains_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return the bool (len(users), len(items)) matrix that is True where items[s] is a positive of users[b]."""
        if self._dense is not None:
            # Whole rows first, then columns: far fewer cache misses than one gather per (user, item) cell.
            table = self._dense.view(-1, self.n_items)
            return table.index_select(0, users).index_select(1, items)
        return self.contains(users.unsqueeze(1), items.unsqueeze(0))

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return a bool tensor (broadcast shape) that is True where item is a positive of user."""
        keys = users * self.n_items + items
        if self._dense is not None:
            return self._dense[keys]
        if self._keys.numel() == 0:
            return torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
        flat = keys.reshape(-1)
        at = torch.searchsorted(self._keys, flat).clamp_(max=self._keys.numel() - 1)
        return (self._keys[at] == flat).reshape(keys.shape)


def check_free_items(train: Interactions) -> None:
    """ValueError naming a user who has interacted with every item (no negative can be drawn for it)."""
    full = np.flatnonzero(train.user_counts() >= train.n_items)
    if full.size and train.n_items > 0:
        raise ValueError(
            f"user {int(full[0])} has interacted with all {train.n_items} items, so no negative item "
            "exists for it; remove such users or use negatives.strategy 'in_batch' or 'none'"
        )


def sampling_weights(config: NegativeConfig, counts: np.ndarray) -> np.ndarray:
    """The unnormalised float64 weights of one private draw: count^β for popularity, else ones."""
    if config.strategy != "popularity":
        return np.ones(counts.shape[0])
    weights = counts.astype(np.float64) ** config.popularity_power
    # 0 ** 0 is 1, so power 0 gives never-seen items weight 1 (uniform); otherwise they get 0.
    if config.popularity_power > 0.0:
        weights[counts == 0] = 0.0
    return weights


def probabilities(config: NegativeConfig, counts: np.ndarray, batch_size: int = 1) -> np.ndarray:
    """Q (float64, n_items) of one negative before rejection, from the item counts (see the module docstring)."""
    n_items = counts.shape[0]
    frequency = counts.astype(np.float64) / max(int(counts.sum()), 1)
    if config.strategy == "popularity":
        weights = sampling_weights(config, counts)
        return weights / max(float(weights.sum()), 1e-300)
    if config.strategy == "in_batch":
        return frequency
    if config.strategy == "mixed":
        k = config.per_positive
        mixed: np.ndarray = (batch_size * frequency + k / n_items) / (batch_size + k)
        return mixed
    return np.full(n_items, 1.0 / max(n_items, 1))


class _ComplementDraw:
    """Draws items with probability ∝ weights, excluding the user's positives (rejection, then exact)."""

    def __init__(self, train: Interactions, positives: PositiveSet, weights: np.ndarray, device: torch.device) -> None:
        self.n_items = train.n_items
        self.positives = positives
        self.device = device
        check_free_items(train)
        w = np.asarray(weights, dtype=np.float64)
        # Prefix sums over items (C) and over each user's positives in CSR order (G), for both the requested
        # weights and plain ones; users whose complement has no weight use the ones (uniform) instead.
        tables = []
        for kind in (w, np.ones_like(w)):
            c = np.zeros(train.n_items + 1)
            np.cumsum(kind, out=c[1:])
            g = np.zeros(train.nnz + 1)
            np.cumsum(kind[train.indices], out=g[1:])
            tables.append((c, g))
        self._c = torch.from_numpy(np.stack([tables[0][0], tables[1][0]])).to(device)
        self._g = torch.from_numpy(np.stack([tables[0][1], tables[1][1]])).to(device)
        self._indptr = torch.from_numpy(train.indptr).to(device)
        mass = self._c[0, -1] - (self._g[0, self._indptr[1:]] - self._g[0, self._indptr[:-1]])
        # Below this the complement's mass is rounding noise of the subtraction: treat it as empty.
        self._uniform_user = mass <= 1e-9 * float(self._c[0, -1])
        self._cdf = self._c[0, 1:].contiguous()
        self._total = float(self._c[0, -1])

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw n items from the unconditioned weights (inverse CDF)."""
        t = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64) * self._total
        return torch.searchsorted(self._cdf, t, right=True).clamp_(max=self.n_items - 1)

    def _exact(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw one item per user exactly from the complement of its positives (bisection on prefix sums)."""
        kind = self._uniform_user[users].long()
        start, end = self._indptr[users], self._indptr[users + 1]
        g_start = self._g[kind, start]
        mass = self._c[kind, -1] - (self._g[kind, end] - g_start)
        t = torch.rand(users.shape[0], generator=generator, device=self.device, dtype=torch.float64) * mass
        lo = torch.zeros_like(users)
        hi = torch.full_like(users, self.n_items - 1)
        base = users * self.n_items
        # Smallest x with F(x) = C[x+1] − (positive weight ≤ x) > t; F only rises at non-positive items.
        for _ in range(max(1, int(self.n_items - 1).bit_length())):
            mid = (lo + hi) // 2
            below = torch.searchsorted(self.positives._keys, base + mid, right=True)
            f = self._c[kind, mid + 1] - (self._g[kind, below] - g_start)
            right = f <= t
            lo = torch.where(right, mid + 1, lo)
            hi = torch.where(right, hi, mid)
        return lo

    def sample(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """Return int64 (len(users), k) negatives, none a positive of its row's user."""
        rows = users.unsqueeze(1).expand(-1, k)
        items = self._draw(rows.numel(), generator).reshape(rows.shape)
        bad = self.positives.contains(rows, items)
        for _ in range(_REJECTION_ROUNDS):
            where = bad.nonzero(as_tuple=True)
            if where[0].numel() == 0:
                return items
            redrawn = self._draw(where[0].numel(), generator)
            items[where] = redrawn
            bad[where] = self.positives.contains(rows[where], redrawn)
        while True:
            where = bad.nonzero(as_tuple=True)
            if where[0].numel() == 0:
                return items
            # Rounding in the prefix sums could in principle land on a positive; such draws go round again.
            redrawn = self._exact(rows[where], generator)
            items[where] = redrawn
            bad[where] = self.positives.contains(rows[where], redrawn)


class NegativeSampler:
    """Draws the negatives of a batch for one NegativeConfig and exposes their distribution Q."""

    def __init__(self, config: NegativeConfig, train: Interactions, device: torch.device | None = None) -> None:
        self.config = config
        self.n_items = train.n_items
        self.device = device if device is not None else torch.device("cpu")
        counts = train.item_counts().astype(np.float64)
        self._counts = counts
        self._q: dict[int, torch.Tensor] = {}
        self._frequency = torch.from_numpy(counts / max(train.nnz, 1)).to(self.device)
        self.positives = PositiveSet(train, self.device)
        strategy = config.strategy
        weights = sampling_weights(config, counts)
        self._weights = torch.from_numpy(weights / max(float(weights.sum()), 1e-300)).to(self.device)
        self._draw: _ComplementDraw | None = None
        if strategy in PER_POSITIVE:
            self._draw = _ComplementDraw(train, self.positives, weights, self.device)

    @property
    def uses_log_q(self) -> bool:
        """Whether sampled-softmax logits get −log Q(j) (logq_correction on a non-uniform sampler)."""
        return self.config.logq_correction and self.config.strategy in CORRECTABLE

    def probabilities(self, batch_size: int = 1) -> torch.Tensor:
        """Return Q (float64, n_items) of one negative before rejection (batch_size matters for mixed)."""
        if batch_size not in self._q:
            # Kept per batch size: log_q runs three times a batch, and a host-to-device copy each time would
            # stall the CUDA path.
            self._q[batch_size] = torch.from_numpy(probabilities(self.config, self._counts, batch_size)).to(self.device)
        return self._q[batch_size].clone()

    def user_probabilities(self, user: int) -> torch.Tensor:
        """Return Q_u (float64, n_items): the law of one private negative of `user` after rejection."""
        if self.config.strategy in ("none", "in_batch"):
            raise ValueError(f"strategy {self.config.strategy!r} draws no private negatives per positive")
        q = self._weights.clone()
        users = torch.full((self.n_items,), user, dtype=torch.int64, device=self.device)
        own = self.positives.contains(users, torch.arange(self.n_items, device=self.device))
        q[own] = 0.0
        if float(q.sum()) <= 1e-9:
            # Only zero-weight items are left: the sampler falls back to uniform over them.
            q = (~own).to(torch.float64)
        return q / q.sum()

    def log_q(self, items: torch.Tensor, batch_size: int = 1) -> torch.Tensor:
        """Return log Q(items) as float32 (−inf for items Q never draws)."""
        return torch.log(self.probabilities(batch_size)[items]).to(torch.float32)

    def candidates(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return hard's int64 (B, hard_candidates) uniformly drawn non-positive candidates."""
        assert self._draw is not None
        return self._draw.sample(users, self.config.hard_candidates, generator)

    def sample(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        generator: torch.Generator,
        user_factors: torch.Tensor | None = None,
        item_factors: torch.Tensor | None = None,
    ) -> Negatives:
        """Return the negatives of the batch of positives (users[b], items[b]); hard needs the factors."""
        strategy, k = self.config.strategy, self.config.per_positive
        b = users.shape[0]
        private = torch.zeros((b, 0), dtype=torch.int64, device=self.device)
        shared = torch.zeros(0, dtype=torch.int64, device=self.device)
        if strategy in ("uniform", "popularity", "mixed"):
            assert self._draw is not None
            private = self._draw.sample(users, k, generator)
        elif strategy == "hard":
            if user_factors is None or item_factors is None:
                raise ValueError("strategy 'hard' scores candidates: sample() needs user_factors and item_factors")
            cand = self.candidates(users, generator)
            private = hardest(cand, user_factors[users], item_factors, k)
        if strategy in IN_BATCH:
            shared = items
        valid = ~self.positives.contains_matrix(users, shared)
        return Negatives(items=private, shared=shared, shared_valid=valid)


def hardest(candidates: torch.Tensor, user_rows: torch.Tensor, item_factors: torch.Tensor, k: int) -> torch.Tensor:
    """Return the k candidates of each row with the highest score user_rows[b]·item_factors[c], best first."""
    scores = torch.bmm(item_factors[candidates], user_rows.unsqueeze(2)).squeeze(2)
    top = torch.topk(scores, k, dim=1).indices
    return torch.gather(candidates, 1, top)
