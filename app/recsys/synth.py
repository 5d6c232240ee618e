"""Planted-community interaction data: groups of users that consume only their own group's items (plus noise).

Users and items are split into n_groups equal, contiguous blocks: user u is in group ⌊u / users_per_group⌋,
item i in group ⌊i / items_per_group⌋. Inside every group the item of rank r = i mod items_per_group
has the Zipf-like popularity

    p_r = (r + 1)^(−a) / Σ_s (s + 1)^(−a)        (a = popularity_exponent; a = 0 is uniform)

User u draws n_u = 2 + Poisson(m − 2) interactions (m = interactions_per_user, so E[n_u] = m, n_u ≥ 2).
Each interaction independently lands in another group with probability `noise` (that group uniform among
the other n_groups − 1), so the user's noise count is Binomial(n_u, noise). Within a target group the
user's items are distinct and drawn without replacement from p (successive sampling: the first n distinct
values of an i.i.d. stream from p, equivalently the n largest of log p_r + Gumbel noise), every count capped
at items_per_group. All weights are 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from app.recsys.interactions import Interactions

# Bound on the draws of one block of requests (and its Gumbel fallback, requests × items_per_group floats).
_CHUNK_BYTES = 64 * 2**20
# Rounds of i.i.d. draws before the remaining rows switch to Gumbel top-k.
_ROUNDS = 8
# Rows per block written by write_planted_csv.
_CSV_ROWS = 1 << 18


@dataclass(frozen=True)
class PlantedConfig:
    """Shape of a planted-community data set; see the module docstring for the generative model."""

    n_groups: int = 2
    users_per_group: int = 500
    items_per_group: int = 200
    interactions_per_user: float = 20  # mean per user; each user gets 2 + Poisson(mean − 2)
    popularity_exponent: float = 1.0  # Zipf exponent of item popularity inside each group
    noise: float = 0.0  # probability that an interaction goes to an item of another group
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_groups < 1:
            raise ValueError(f"n_groups must be >= 1, got {self.n_groups}")
        if self.users_per_group < 1:
            raise ValueError(f"users_per_group must be >= 1, got {self.users_per_group}")
        if self.items_per_group < 2:
            raise ValueError(f"items_per_group must be >= 2, got {self.items_per_group}")
        if not 2 <= self.interactions_per_user <= self.items_per_group:
            raise ValueError(
                f"interactions_per_user must lie in [2, items_per_group={self.items_per_group}] since every "
                f"user has at least 2 distinct items, got {self.interactions_per_user}"
            )
        if not self.popularity_exponent >= 0.0:
            raise ValueError(f"popularity_exponent must be >= 0, got {self.popularity_exponent}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise must lie in [0, 1), got {self.noise}")
        if self.noise > 0.0 and self.n_groups < 2:
            raise ValueError("noise > 0 needs n_groups >= 2 (noise goes to another group)")


@dataclass(frozen=True, eq=False)
class PlantedData:
    """Generated interactions and the planted group of every user and item."""

    interactions: Interactions
    user_groups: np.ndarray  # int64 group per user
    item_groups: np.ndarray  # int64 group per item


def _member(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return whether each query occurs in the sorted array sorted_keys."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(queries.shape, dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, queries), sorted_keys.shape[0] - 1)
    found: np.ndarray = sorted_keys[position] == queries
    return found


def _draw_block(rng: np.random.Generator, counts: np.ndarray, log_popularity: np.ndarray) -> np.ndarray:
    """Return sorted keys row·n + rank: counts[row] distinct ranks per row, drawn without replacement."""
    n = log_popularity.shape[0]
    popularity = np.exp(log_popularity - log_popularity.max())
    cdf = np.cumsum(popularity / popularity.sum())
    chosen = np.zeros(0, dtype=np.int64)
    need = counts.astype(np.int64)
    # The first counts[row] distinct items of an i.i.d. stream from p are a sample without replacement, so
    # rounds of i.i.d. draws keep each row's first new items in draw order (cost ∝ nnz, not rows × n).
    for _ in range(_ROUNDS):
        pending = np.flatnonzero(need > 0)
        if pending.shape[0] == 0:
            return chosen
        rows = np.repeat(pending, 2 * need[pending] + 4)
        ranks = np.minimum(np.searchsorted(cdf, rng.random(rows.shape[0]), side="right"), n - 1)
        keys, first = np.unique(rows * n + ranks, return_index=True)
        fresh = ~_member(chosen, keys)
        # Draws are laid out row after row, so ordering by first position groups rows and keeps draw order.
        order = np.argsort(first[fresh], kind="stable")
        keys = keys[fresh][order]
        key_rows = keys // n
        row_start = np.searchsorted(key_rows, key_rows, side="left")
        keep = np.arange(keys.shape[0]) - row_start < need[key_rows]
        chosen = np.union1d(chosen, keys[keep])
        need -= np.bincount(key_rows[keep], minlength=need.shape[0])
    # Rows still short after the rounds need rare items (steep popularity): finish them with Gumbel top-k
    # (the largest log p + Gumbel among the ranks not chosen yet), which costs rows × n but no more rounds.
    pending = np.flatnonzero(need > 0)
    if pending.shape[0]:
        keys = log_popularity + rng.gumbel(size=(pending.shape[0], n))
        taken = chosen[np.isin(chosen // n, pending)]
        keys[np.searchsorted(pending, taken // n), taken % n] = -np.inf
        width = int(need[pending].max())
        top = np.argsort(-keys, axis=1, kind="stable")[:, :width]
        take = np.arange(width) < need[pending][:, None]
        chosen = np.union1d(chosen, (pending[:, None] * n + top)[take])
    return chosen


def _draw_items(
    rng: np.random.Generator, counts: np.ndarray, log_popularity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (request, item rank) pairs: counts[j] distinct ranks per request, drawn without replacement."""
    n = log_popularity.shape[0]
    # Each row draws at most 2·n + 4 values per round and the Gumbel fallback holds n floats per row.
    chunk = max(1, _CHUNK_BYTES // (8 * (2 * n + 4)))
    rows_out: list[np.ndarray] = []
    ranks_out: list[np.ndarray] = []
    for start in range(0, counts.shape[0], chunk):
        keys = _draw_block(rng, counts[start : start + chunk], log_popularity)
        rows_out.append(keys // n + start)
        ranks_out.append(keys % n)
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows_out), np.concatenate(ranks_out)


def planted_communities(config: PlantedConfig) -> PlantedData:
    """Generate interactions with planted user/item communities (seeded, vectorised)."""
    rng = np.random.default_rng(config.seed)
    n_groups, upg, ipg = config.n_groups, config.users_per_group, config.items_per_group
    n_users = n_groups * upg
    user_groups = np.repeat(np.arange(n_groups, dtype=np.int64), upg)
    item_groups = np.repeat(np.arange(n_groups, dtype=np.int64), ipg)
    log_popularity = -config.popularity_exponent * np.log(np.arange(1, ipg + 1, dtype=np.float64))
    totals = 2 + rng.poisson(config.interactions_per_user - 2, size=n_users)
    # counts[u, h]: interactions of user u that land in group h (own group in column user_groups[u]).
    counts = np.zeros((n_users, n_groups), dtype=np.int64)
    noisy = rng.binomial(totals, config.noise) if config.noise > 0 else np.zeros(n_users, np.int64)
    counts[np.arange(n_users), user_groups] = totals - noisy
    if n_groups > 1 and noisy.any():
        # Split each user's noise uniformly over the other groups: offset o ∈ [1, G) → group (g + o) mod G.
        spread = rng.multinomial(noisy, np.full(n_groups - 1, 1.0 / (n_groups - 1)))
        for offset in range(1, n_groups):
            counts[np.arange(n_users), (user_groups + offset) % n_groups] += spread[:, offset - 1]
    np.minimum(counts, ipg, out=counts)
    users_out: list[np.ndarray] = []
    items_out: list[np.ndarray] = []
    for group in range(n_groups):
        requesting = np.flatnonzero(counts[:, group] > 0)
        rows, ranks = _draw_items(rng, counts[requesting, group], log_popularity)
        users_out.append(requesting[rows])
        items_out.append(group * ipg + ranks)
    users = np.concatenate(users_out)
    items = np.concatenate(items_out)
    interactions = Interactions.from_coo(users, items, n_users=n_users, n_items=n_groups * ipg)
    return PlantedData(interactions=interactions, user_groups=user_groups, item_groups=item_groups)


def write_planted_csv(data: PlantedData, path: str | os.PathLike[str]) -> None:
    """Write `user,item,weight,user_group,item_group` rows, ids like "u12" and "i7" (an uploadable csv)."""
    inter = data.interactions
    users = inter.row_users()
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("user,item,weight,user_group,item_group\n")
        for start in range(0, inter.nnz, _CSV_ROWS):
            u = users[start : start + _CSV_ROWS]
            i = inter.indices[start : start + _CSV_ROWS]
            # numpy string ufuncs build each block's lines without a Python loop per row.
            columns = [
                np.strings.add("u", u.astype(str)),
                np.strings.add("i", i.astype(str)),
                inter.weights[start : start + _CSV_ROWS].astype(str),
                data.user_groups[u].astype(str),
                data.item_groups[i].astype(str),
            ]
            lines = columns[0]
            for column in columns[1:]:
                lines = np.strings.add(np.strings.add(lines, ","), column)
            handle.write("\n".join(lines.tolist()))
            handle.write("\n")
