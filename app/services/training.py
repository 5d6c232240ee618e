"""Run one training job: load its dataset, split, fit, evaluate, refit, store the model.

Called by the Celery task with a job id; everything it learns about the job comes from the
database row, and everything it produces goes back there or to the artifact store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.models import Dataset, Job, Model, new_id
from app.recsys.artifact import ModelArtifact, save_model
from app.recsys.base import EmbeddingModel
from app.recsys.folding import folding_diagnostics
from app.recsys.interactions import Interactions
from app.recsys.metrics import popularity_metrics, ranking_metrics
from app.recsys.split import split
from app.recsys.wals import WALSConfig, fit_wals
from app.services import job_state
from app.services.datasets import load_dataset
from app.spec import TrainingSpec
from app.storage import LocalArtifactStore

log = logging.getLogger(__name__)

# Per-step metrics use a sample of test users so tracking stays cheap on big data;
# the final metrics use every test user.
TRACKING_USERS = 1000


def wals_config(spec: TrainingSpec) -> WALSConfig:
    """The core's config for a spec: given fields win, omitted ones take Unfold's defaults."""
    base = WALSConfig()
    w = spec.wals

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return WALSConfig(
        dim=spec.dim,
        iterations=pick(w.iterations, base.iterations),
        l2=pick(w.l2, base.l2),
        unobserved_weight=pick(w.unobserved_weight, base.unobserved_weight),
        confidence=w.confidence.scheme,
        alpha=pick(w.confidence.alpha, base.alpha),
        eps=w.confidence.eps,
        solver=w.solver,
        cg_steps=w.cg_steps,
        seed=spec.seed,
    )


class _Progress:
    """Turns the core's per-step callback into job progress, history and early stopping."""

    def __init__(self, reporter: job_state.JobReporter, phase: str, total: int, spec: TrainingSpec) -> None:
        self.reporter, self.phase, self.total = reporter, phase, total
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
            "unit": "iteration",
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
    config: WALSConfig,
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

    progress = _Progress(reporter, phase, config.iterations, spec)
    return fit_wals(data, config, callback=progress, evaluator=evaluator), progress


def train_model(
    sessions: sessionmaker[Session], store: LocalArtifactStore, job: Job, reporter: job_state.JobReporter
) -> Model:
    """Fit, evaluate and (when a split was held out) refit on all data; store the artifact."""
    spec = TrainingSpec.model_validate(job.spec)
    with sessions() as session:
        dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise LookupError(f"dataset {job.dataset_id!r} no longer exists")
    stored = load_dataset(store, dataset)
    full = stored.interactions
    config = wals_config(spec)
    ev = spec.evaluation
    metrics: dict[str, Any] = {}
    if ev.split == "none":
        model, _ = _fit(full, config, reporter, "fit", spec, None)
        metrics["folding"] = folding_diagnostics(
            model.user_factors, model.item_factors, full, None, stored.item_groups, seed=spec.seed
        )
    else:
        train, test = split(full, ev.split, ev.test_fraction, spec.seed)
        if test.nnz == 0:
            raise ValueError(f"evaluation.split {ev.split!r} left no test interactions")
        model, progress = _fit(train, config, reporter, "fit", spec, test)
        ks = tuple(ev.k)
        metrics.update(ranking_metrics(model.user_factors, model.item_factors, train, test, ks))
        metrics["baseline"] = {"popularity": popularity_metrics(train, test, ks)}
        metrics["evaluated_users"] = int(np.count_nonzero(np.diff(test.indptr)))
        metrics["folding"] = folding_diagnostics(
            model.user_factors, model.item_factors, train, test, stored.item_groups, seed=spec.seed
        )
        # The served model learns from every interaction; held-out metrics above stay honest
        # because they come from the model that never saw the test split.
        iterations = progress.best_step if spec.early_stopping and progress.best_step else config.iterations
        config = replace(config, iterations=iterations)
        model, _ = _fit(full, config, reporter, "refit", spec, None)
    if reporter.cancel_requested():
        raise job_state.JobCancelled("cancelled by request")

    model_id = new_id("mdl")
    resolved = {**spec.model_dump(mode="json"), "wals": _resolved_wals(config)}
    staged = store.staging_dir()
    try:
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
        index={"kind": "exact", "metric": "dot"},
        artifact_key=key,
    )


def _resolved_wals(config: WALSConfig) -> dict[str, Any]:
    return {
        "iterations": config.iterations,
        "l2": config.l2,
        "unobserved_weight": config.unobserved_weight,
        "confidence": {"scheme": config.confidence, "alpha": config.alpha, "eps": config.eps},
        "solver": config.solver,
        "cg_steps": config.cg_steps,
    }


def run_job(
    sessions: sessionmaker[Session],
    store: LocalArtifactStore,
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
