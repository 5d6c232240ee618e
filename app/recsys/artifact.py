"""A trained model on disk: factors, id maps, seen items and metadata — everything a loader needs.

Layout of a model directory (numpy only, never pickle, so serving needs no torch):
  model.npz   user_factors, item_factors (float32), user_ids, item_ids (unicode),
              seen_indptr (int64), seen_indices (int32): the CSR of every item each user touched,
              seen_weights (float32, optional): each of those interactions' raw weight (what fold-in needs
              to recompute a known user's vector with new interactions)
  model.json  {"format_version", "algorithm", "dim", "config", "metrics", "history", ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
ARRAYS = "model.npz"
META = "model.json"


@dataclass(frozen=True)
class ModelArtifact:
    """A servable model: embeddings plus the external ids and the seen-items CSR."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    seen_weights: np.ndarray | None = None  # raw weight per seen item; None in models saved before it was kept

    @property
    def dim(self) -> int:
        return int(self.item_factors.shape[1])

    @property
    def nbytes(self) -> int:
        arrays = (self.user_factors, self.item_factors, self.user_ids, self.item_ids)
        extra = self.seen_weights.nbytes if self.seen_weights is not None else 0
        return sum(a.nbytes for a in arrays) + self.seen_indptr.nbytes + self.seen_indices.nbytes + extra

    def seen(self, user: int) -> np.ndarray:
        """Item indices the user interacted with in the training data."""
        return self.seen_indices[self.seen_indptr[user] : self.seen_indptr[user + 1]]


def save_model(directory: Path, artifact: ModelArtifact) -> None:
    """Write a model directory (the caller publishes it atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    optional = {}
    if artifact.seen_weights is not None:
        optional["seen_weights"] = np.ascontiguousarray(artifact.seen_weights, dtype=np.float32)
    np.savez(
        directory / ARRAYS,
        allow_pickle=False,  # an object array is an error here, never a pickle on disk
        user_factors=np.ascontiguousarray(artifact.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(artifact.item_factors, dtype=np.float32),
        user_ids=artifact.user_ids,
        item_ids=artifact.item_ids,
        seen_indptr=artifact.seen_indptr.astype(np.int64),
        seen_indices=artifact.seen_indices.astype(np.int32),
        **optional,
    )
    meta = {"format_version": FORMAT_VERSION, "dim": artifact.dim, **artifact.meta}
    (directory / META).write_text(json.dumps(meta, indent=1))


def load_model(directory: Path) -> ModelArtifact:
    """Read a model directory written by save_model."""
    meta = json.loads((directory / META).read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"model format version {version} is not supported (expected {FORMAT_VERSION})")
    with np.load(directory / ARRAYS, allow_pickle=False) as z:
        return ModelArtifact(
            user_factors=z["user_factors"],
            item_factors=z["item_factors"],
            user_ids=z["user_ids"],
            item_ids=z["item_ids"],
            seen_indptr=z["seen_indptr"],
            seen_indices=z["seen_indices"],
            meta=meta,
            seen_weights=z["seen_weights"] if "seen_weights" in z.files else None,
        )
