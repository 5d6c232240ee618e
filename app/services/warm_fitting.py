"""Warm-started training, the worker's part: the fit starts from another model's factors, matched by id.

Users and items the model knows start at its factors; the others are drawn exactly as a fresh fit draws them
(same seed, same order), so a warm start differs from a cold one only where the model has something to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from app.models import Model
from app.recsys.artifact import load_model
from app.recsys.base import EmbeddingModel, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.wals import WALSConfig, init_factors
from app.recsys.warm_start import warm_factors
from app.services.algorithms import Fit, plan_for
from app.services.datasets import StoredDataset
from app.spec import TrainingSpec
from app.storage import ArtifactStore


@dataclass(frozen=True)
class WarmStart:
    """The fit that starts from the model, and how much of the data the model knew (for the model's metrics)."""

    fit: Fit
    report: dict[str, Any]


def warm_start(store: ArtifactStore, source: Model, stored: StoredDataset, spec: TrainingSpec) -> WarmStart:
    """A WALS fit that starts from `source`'s factors wherever the caller gives it no state to resume."""
    artifact = load_model(store.local_dir(source.artifact_key))
    inner = plan_for(spec).fit
    report: dict[str, Any] = {"model_id": source.id}

    def fit(
        train: Interactions, config: Any, callback: Any = None, evaluator: Any = None, **kwargs: Any
    ) -> EmbeddingModel:
        if kwargs.get("resume") is None:
            kwargs["resume"] = _state(train, config)
        return inner(train, config, callback, evaluator, **kwargs)

    def _state(train: Interactions, config: WALSConfig) -> TrainingState:
        # The same draw as fit_wals' fresh start: items first, then users, from one seeded generator.
        generator = torch.Generator().manual_seed(config.seed)
        V = init_factors(train.n_items, config, generator).numpy()
        U = init_factors(train.n_users, config, generator).numpy()
        user_factors, users = warm_factors(U, stored.user_ids, artifact.user_ids, artifact.user_factors)
        item_factors, items = warm_factors(V, stored.item_ids, artifact.item_ids, artifact.item_factors)
        report.update(users_known=users, users_new=train.n_users - users, items_known=items,
                      items_new=train.n_items - items)  # fmt: skip
        return TrainingState("wals", 0, {"user_factors": user_factors, "item_factors": item_factors},
                             {"history": [], "elapsed": 0.0})  # fmt: skip

    return WarmStart(fit, report)
