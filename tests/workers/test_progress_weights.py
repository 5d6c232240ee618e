"""A job's fraction weighs each phase by its steps, so a fit and its refit of as many steps count the same."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.recsys.sgd_config import SEARCH_MAX_EPOCHS
from app.recsys.synth import PlantedConfig, planted_communities
from app.services.algorithms import plan_for
from app.services.datasets import StoredDataset
from app.services.pipeline import train_evaluate_refit
from app.services.progress import JobProgress, planned_phases
from app.spec import TrainingSpec


class _Recorder:
    """The part of a JobReporter a checkpoint-free pipeline uses: the snapshots it is sent."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []

    def report(self, snapshot: dict[str, Any], entry: dict[str, Any] | None) -> None:
        self.snapshots.append(snapshot)
        if entry is not None:
            self.history.append(entry)

    def interrupt(self) -> None:
        return None


def test_an_sgd_fit_and_its_refit_weigh_the_same_whatever_the_epochs():
    planted = planted_communities(
        PlantedConfig(n_groups=2, users_per_group=30, items_per_group=20, interactions_per_user=6, seed=0)
    )
    data = planted.interactions
    stored = StoredDataset(data, np.arange(data.n_users).astype(str), np.arange(data.n_items).astype(str))
    spec = TrainingSpec(dataset_id="ds_x", algorithm="sgd", dim=4, sgd={"epochs": 3}, search={"mode": "off"})
    recorder = _Recorder()
    weight = plan_for(spec).weight  # as training.train_model plans it
    assert weight == 3 / SEARCH_MAX_EPOCHS  # 3 epochs in fits of the search's unit
    job = JobProgress(recorder, planned_phases(spec, False, weight), "epoch")  # type: ignore[arg-type]
    train_evaluate_refit(stored, spec, job, None, 3.0)
    assert job.weights["fit"] == job.weights["refit"] == weight
    # The last fit snapshot: the fit is as much of the job as the refit still to come (evaluate and publish aside).
    after_fit = [s["fraction"] for s in recorder.snapshots if s["phase"] == "fit"][-1]
    rest = job.weights["fit"] + job.weights["evaluate"] + job.weights["refit"] + job.weights["publish"]
    assert abs(after_fit - job.weights["fit"] / rest) < 1e-3
    assert after_fit < 0.5
