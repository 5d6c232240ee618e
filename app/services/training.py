"""Run one training job: load its dataset, split, fit, evaluate, refit, store the model.

Called by the Celery task with a job id; everything it learns about the job comes from the
database row, and everything it produces goes back there or to the artifact store.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.models import Dataset, Job, Model, new_id
from app.recsys.artifact import ModelArtifact, save_model
from app.recsys.base import EmbeddingModel
from app.recsys.embedding_map import EmbeddingMapConfig, embedding_map
from app.recsys.folding import folding_diagnostics
from app.recsys.index import IndexConfig, ItemIndex, build_index
from app.recsys.interactions import Interactions
from app.recsys.metrics import popularity_metrics, ranking_metrics
from app.recsys.split import split
from app.services import job_state
from app.services.algorithms import Plan, plan_for
from app.services.datasets import StoredDataset, load_dataset
from app.services.embedding_maps import EMBEDDING_MAP_FILE
from app.spec import TrainingSpec
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

# Per-step metrics use a sample of test users so tracking stays cheap on big data;
# the final metrics use every test user.
TRACKING_USERS = 1000


class _Progress:
    """Turns the core's per-step callback into job progress, history and early stopping."""

    def __init__(self, reporter: job_state.JobReporter, phase: str, total: int, unit: str, spec: TrainingSpec) -> None:
        self.reporter, self.phase, self.total, self.unit = reporter, phase, total, unit
        self.early = spec.early_stopping if phase == "fit" else None
        self.best_value = -np.inf
        self.best_step = 0
        self.started = time.monotonic()
        self.last = self.started

    def __call__(self, step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> bool:
        now = time.monotonic()
        seconds, self.last = now - self.last, now
        eta = (now - self.started) / step * (self.total - step)
        progress = {
            "step": step,
            "total_steps": self.total,
            "fraction": step / self.total,
            "unit": self.unit,
            "phase": self.phase,
            "eta_seconds": round(eta, 3),
            "loss": loss,
            "metrics": metrics,
        }
        entry = {"step": step, "phase": self.phase, "loss": loss, "seconds": round(seconds, 4), "metrics": metrics}
        self.reporter.report(progress, entry)
        if self.early is not None and self.early.metric in metrics:
            value = metrics[self.early.metric]
            if value > self.best_value:
                self.best_value, self.best_step = value, step
            elif step - self.best_step >= self.early.patience:
                return True
        return False


def _fit(
    data: Interactions,
    plan: Plan,
    reporter: job_state.JobReporter,
    phase: str,
    spec: TrainingSpec,
    test: Interactions | None,
) -> tuple[EmbeddingModel, _Progress]:
    ks = tuple(spec.evaluation.k)
    evaluator = None
    if test is not None and test.nnz:

        def evaluator(U: np.ndarray, V: np.ndarray) -> dict[str, float]:
            return ranking_metrics(U, V, data, test, ks, max_users=TRACKING_USERS, seed=spec.seed)

    progress = _Progress(reporter, phase, plan.steps, plan.unit, spec)
    return plan.fit(data, plan.config, progress, evaluator), progress


def fit_and_score(
    data: Interactions, held_out: Interactions, spec: TrainingSpec, reporter: job_state.JobReporter
) -> dict[str, float]:
    """Fit on `data` with progress and early stopping, score every held-out user; no artifact (tuning trials)."""
    model, _ = _fit(data, plan_for(spec), reporter, "fit", spec, held_out)
    return ranking_metrics(model.user_factors, model.item_factors, data, held_out, tuple(spec.evaluation.k))


def train_model(
    sessions: sessionmaker[Session], store: ArtifactStore, job: Job, reporter: job_state.JobReporter
) -> Model:
    """Fit, evaluate and (when a split was held out) refit on all data; store the artifact."""
    spec = TrainingSpec.model_validate(job.spec)
    with sessions() as session:
        dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise LookupError(f"dataset {job.dataset_id!r} no longer exists")
    stored = load_dataset(store, dataset)
    full = stored.interactions
    plan = plan_for(spec)
    ev = spec.evaluation
    metrics: dict[str, Any] = {}
    if ev.split == "none":
        model, _ = _fit(full, plan, reporter, "fit", spec, None)
        metrics["folding"] = folding_diagnostics(
            model.user_factors, model.item_factors, full, None, stored.item_groups, seed=spec.seed
        )
    else:
        train, test = split(full, ev.split, ev.test_fraction, spec.seed)
        if test.nnz == 0:
            raise ValueError(f"evaluation.split {ev.split!r} left no test interactions")
        model, progress = _fit(train, plan, reporter, "fit", spec, test)
        ks = tuple(ev.k)
        metrics.update(ranking_metrics(model.user_factors, model.item_factors, train, test, ks))
        metrics["baseline"] = {"popularity": popularity_metrics(train, test, ks)}
        metrics["evaluated_users"] = int(np.count_nonzero(np.diff(test.indptr)))
        metrics["folding"] = folding_diagnostics(
            model.user_factors, model.item_factors, train, test, stored.item_groups, seed=spec.seed
        )
        # The served model learns from every interaction; held-out metrics above stay honest
        # because they come from the model that never saw the test split.
        if spec.early_stopping and progress.best_step:
            plan = plan.with_steps(progress.best_step)
        model, _ = _fit(full, plan, reporter, "refit", spec, None)
    if reporter.cancel_requested():
        raise job_state.JobCancelled("cancelled by request")

    model_id = new_id("mdl")
    resolved = {**spec.model_dump(mode="json"), spec.algorithm: plan.resolved()}
    resolved.pop("sgd" if spec.algorithm == "wals" else "wals", None)
    staged = store.staging_dir()
    try:
        index = _build_index(model, spec)
        index.save(staged)
        _save_embedding_map(staged, model, full, stored, spec.seed)
        save_model(
            staged,
            ModelArtifact(
                user_factors=model.user_factors,
                item_factors=model.item_factors,
                user_ids=stored.user_ids,
                item_ids=stored.item_ids,
                seen_indptr=full.indptr,
                seen_indices=full.indices,
                meta={
                    "id": model_id,
                    "algorithm": spec.algorithm,
                    "spec": resolved,
                    "fold_in": _fold_in_parameters(resolved),
                    "metrics": metrics,
                    "history": reporter.history,
                    "dataset_id": dataset.id,
                },
            ),
        )
        key = f"models/{model_id}"
        store.publish_dir(key, staged)
    except BaseException:
        store.discard(staged)
        raise
    return Model(
        id=model_id,
        job_id=job.id,
        dataset_id=dataset.id,
        algorithm=spec.algorithm,
        dim=spec.dim,
        spec=resolved,
        metrics=metrics,
        index=index.describe(),
        artifact_key=key,
    )


def _save_embedding_map(
    staged: Path, model: EmbeddingModel, full: Interactions, stored: StoredDataset, seed: int
) -> None:
    """The 2-D PCA map of the served item factors, coloured by planted group when the data know it
    (GET /v1/models/{id}/embedding-map serves this file)."""
    config = EmbeddingMapConfig(seed=seed)
    picture = embedding_map(model.item_factors, full.item_counts(), stored.item_groups, stored.item_group_names, config)
    (staged / EMBEDDING_MAP_FILE).write_text(json.dumps(picture.to_json(stored.item_ids)))


def _build_index(model: EmbeddingModel, spec: TrainingSpec) -> ItemIndex:
    """The serving index over the refit item factors; HNSW recall is measured against exact search
    with the model's own users as queries, so model.index reports what serving will deliver."""
    started = time.monotonic()
    config = IndexConfig(**spec.index.model_dump(), seed=spec.seed)
    index = build_index(model.item_factors, config, sample_queries=model.user_factors)
    log.info("index %s over %d items built in %.1f s", index.kind, index.n_items, time.monotonic() - started)
    return index


def _fold_in_parameters(resolved: dict[str, Any]) -> dict[str, Any]:
    """How serving folds a new user in: WALS's own objective, or for SGD a ridge fit to 1 on the
    user's items with a small pull of every other item towards 0 (the same least-squares solve)."""
    if "wals" in resolved:
        w = resolved["wals"]
        return {
            "unobserved_weight": w["unobserved_weight"],
            "l2": w["l2"],
            "l2_scaling": w.get("l2_scaling", "none"),
            "l2_exponent": w.get("l2_exponent", 1.0),
            "confidence": w["confidence"],
        }
    return {"unobserved_weight": 0.1, "l2": 1.0, "confidence": {"scheme": "linear", "alpha": 0.0, "eps": 1.0}}


def run_job(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    job_id: str,
    *,
    worker: str,
    heartbeat_seconds: float,
) -> str:
    """Claim and run a job to a final status; returns what happened (for logs and tests)."""
    if not job_state.claim(sessions, job_id, worker, stale_after=4 * heartbeat_seconds):
        with sessions() as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == "queued" and job.cancel_requested:
                job_state.finish(sessions, job_id, "cancelled")
        log.info("job %s not claimed (finished, cancelled or running elsewhere)", job_id)
        return "skipped"
    with sessions() as session:
        job = session.get(Job, job_id)
    assert job is not None
    model: Model | None = None
    try:
        with job_state.JobReporter(sessions, job_id, heartbeat_seconds) as reporter:
            model = train_model(sessions, store, job, reporter)
        if job_state.succeed(sessions, job_id, model):
            log.info("job %s succeeded: model %s", job_id, model.id)
            return "succeeded"
        store.delete(model.artifact_key)
        job_state.finish(sessions, job_id, "cancelled")
        return "cancelled"
    except job_state.JobCancelled:
        job_state.finish(sessions, job_id, "cancelled")
        log.info("job %s cancelled", job_id)
        return "cancelled"
    except Exception as exc:  # the job records every failure; nothing is left "running"
        log.exception("job %s failed", job_id)
        job_state.finish(sessions, job_id, "failed", error={"type": type(exc).__name__, "message": str(exc)})
        return "failed"
