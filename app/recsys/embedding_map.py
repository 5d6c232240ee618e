"""A 2-D map of the item embeddings: PCA of a seeded sample of item factors, with a colour per point.

The map is the picture of folding: on planted communities a model trained with negatives shows one
cloud per community, a positives-only model lays them on top of each other.

With V_S the factors of the sampled items S (|S| ≤ max_points, uniform without replacement, seeded),
μ = mean_S V_S and the SVD (V_S − μ) = P Σ Wᵀ, the map is x_i = (v_i − μ) · W[:, :2] for i ∈ S and

    explained_variance_ratio_j = σ_j² / Σ_k σ_k²        (j = 1, 2)

Signs are fixed so that the largest-magnitude loading of each axis is positive (the SVD leaves them
free), so the same factors always give the same picture.

Each point is coloured by its item's group when the data know groups (code ≥ 0; −1 = unknown), else by
popularity: the item's rank by training interactions (ties by lower index) puts it in one of the buckets
top 1%, 1–10%, 10–50%, 50–100% of the catalogue.

    group_separation = Σ_g n_g |m_g − m|² / Σ_i |x_i − m|²

over the points of known group (m_g their group mean, m their mean): the share of the map's spread that
lies between groups, 1 when every group is a single point, near 0 when they lie on top of each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT_VERSION = 1
# Upper edges of the popularity buckets, as shares of the catalogue ranked by interactions.
_POPULARITY_EDGES = (0.01, 0.10, 0.50, 1.0)
_POPULARITY_LABELS = ("top 1%", "top 1–10%", "top 10–50%", "bottom 50%")


@dataclass(frozen=True)
class EmbeddingMapConfig:
    """How many items to draw, and the seed that picks them."""

    max_points: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {self.max_points}")


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
    """The 2-D coordinates of the sampled items, their colour codes and what each code means."""

    items: np.ndarray  # int64 item indices of the points, ascending
    xy: np.ndarray  # float64 (n_points, 2)
    colour: np.ndarray  # int64 colour code per point; -1 = unknown group
    colour_by: str  # "group" | "popularity"
    labels: tuple[str, ...]  # label of each colour code ≥ 0
    explained_variance_ratio: tuple[float, float]
    group_separation: float | None  # None when colouring by popularity
    n_items: int

    def to_json(self, item_ids: np.ndarray | None = None) -> dict[str, Any]:
        """A JSON-ready dict; `item_ids` (external id per item index) names the points."""
        counts = np.bincount(self.colour[self.colour >= 0], minlength=len(self.labels))
        legend = [{"code": c, "label": label, "count": int(counts[c])} for c, label in enumerate(self.labels)]
        if np.any(self.colour < 0):
            legend.append({"code": -1, "label": "unknown", "count": int(np.count_nonzero(self.colour < 0))})
        names = item_ids[self.items] if item_ids is not None else self.items
        return {
            "format_version": FORMAT_VERSION,
            "method": "pca",
            "n_items": self.n_items,
            "n_points": int(self.items.shape[0]),
            "explained_variance_ratio": [round(v, 6) for v in self.explained_variance_ratio],
            "colour_by": self.colour_by,
            "group_separation": None if self.group_separation is None else round(self.group_separation, 6),
            "legend": legend,
            "points": {
                "item": [str(n) for n in names.tolist()],
                "x": np.round(self.xy[:, 0], 5).tolist(),
                "y": np.round(self.xy[:, 1], 5).tolist(),
                "colour": self.colour.tolist(),
            },
        }


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Centred PCA to two axes (signs fixed), and the share of variance each axis explains."""
    X = np.asarray(points, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"points must be a non-empty 2-d array, got shape {X.shape}")
    X = X - X.mean(axis=0)
    _, s, Wt = np.linalg.svd(X, full_matrices=False)
    W = Wt[:2].T  # (dim, ≤2)
    # svd_flip: the largest-magnitude loading of each axis positive, so the picture is reproducible.
    signs = np.sign(W[np.argmax(np.abs(W), axis=0), np.arange(W.shape[1])])
    W = W * np.where(signs == 0, 1.0, signs)
    xy = np.zeros((X.shape[0], 2))
    xy[:, : W.shape[1]] = X @ W
    total = float(np.sum(s**2))
    ratio = (s[:2] ** 2 / total) if total > 0 else np.zeros(min(2, s.shape[0]))
    padded = np.zeros(2)
    padded[: ratio.shape[0]] = ratio
    return xy, (float(padded[0]), float(padded[1]))


def popularity_buckets(item_counts: np.ndarray) -> np.ndarray:
    """Bucket code per item from its rank by interaction count (0 = top 1%, … 3 = bottom 50%)."""
    counts = np.asarray(item_counts)
    n = counts.shape[0]
    order = np.argsort(-counts, kind="stable")  # most popular first, ties by lower index
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    share = (rank + 1) / max(n, 1)  # in (0, 1]
    buckets: np.ndarray = np.searchsorted(np.asarray(_POPULARITY_EDGES), share, side="left").astype(np.int64)
    return buckets


def group_separation(xy: np.ndarray, groups: np.ndarray) -> float:
    """Share of the spread of the points of known group (code ≥ 0) that lies between the group means."""
    known = np.asarray(groups) >= 0
    X, g = np.asarray(xy, dtype=np.float64)[known], np.asarray(groups)[known]
    if X.shape[0] == 0:
        return 0.0
    centre = X.mean(axis=0)
    total = float(np.sum((X - centre) ** 2))
    if total <= 0.0:
        return 0.0
    codes, inverse, sizes = np.unique(g, return_inverse=True, return_counts=True)
    means = np.zeros((codes.shape[0], X.shape[1]))
    np.add.at(means, inverse, X)
    means /= sizes[:, None]
    between = float(np.sum(sizes * np.sum((means - centre) ** 2, axis=1)))
    return between / total


def embedding_map(
    item_factors: np.ndarray,
    item_counts: np.ndarray,
    item_groups: np.ndarray | None = None,
    group_names: np.ndarray | None = None,
    config: EmbeddingMapConfig | None = None,
) -> EmbeddingMap:
    """PCA map of a seeded sample of items, coloured by group when known, else by popularity."""
    config = config or EmbeddingMapConfig()
    V = np.asarray(item_factors)
    if V.ndim != 2 or V.shape[0] == 0:
        raise ValueError(f"item_factors must be a non-empty 2-d array, got shape {V.shape}")
    n_items = V.shape[0]
    if np.shape(item_counts) != (n_items,):
        raise ValueError(f"item_counts must have shape ({n_items},), got {np.shape(item_counts)}")
    if item_groups is not None and np.shape(item_groups) != (n_items,):
        raise ValueError(f"item_groups must have shape ({n_items},), got {np.shape(item_groups)}")
    if not np.all(np.isfinite(V)):
        raise ValueError("item_factors hold NaN or infinite values")
    rng = np.random.default_rng(config.seed)
    if n_items > config.max_points:
        items = np.sort(rng.choice(n_items, size=config.max_points, replace=False)).astype(np.int64)
    else:
        items = np.arange(n_items, dtype=np.int64)
    xy, ratio = pca_2d(V[items])
    if item_groups is not None:
        codes = np.asarray(item_groups).astype(np.int64)
        n_groups = int(codes.max(initial=-1)) + 1
        if group_names is not None and len(group_names) >= n_groups:
            labels = tuple(str(name) for name in np.asarray(group_names)[:n_groups].tolist())
        else:
            labels = tuple(f"group {g}" for g in range(n_groups))
        colour = np.where(codes[items] >= 0, codes[items], -1)
        return EmbeddingMap(items, xy, colour, "group", labels, ratio, group_separation(xy, colour), n_items)
    colour = popularity_buckets(item_counts)[items]
    return EmbeddingMap(items, xy, colour, "popularity", _POPULARITY_LABELS, ratio, None, n_items)
