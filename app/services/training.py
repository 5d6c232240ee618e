"""Run one training job: load its dataset, split, fit, evaluate, refit, store the model.

Called by the Celery task with a job id; everything it learns about the job comes from the
database row, and everything it produces goes back there or to the artifact store.

Crash safety: a job checkpoints its training (checkpoints.py) and an attempt that finds a checkpoint
goes on from it. The one model a job can make has an id derived from the job's, and is published
whole before its row is committed with the job's success: an attempt that finds the model already
published (its worker died before the commit) records that model instead of training again, so a
job never loses a finished model nor makes two.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.models import Dataset, Job, Model
from app.recsys.artifact import META, ModelArtifact, save_model
from app.recsys.autotune import AutotuneConfig, autotune
from app.recsys.base import EmbeddingModel, Evaluator, StateCallback, TrainingState
from app.recsys.embedding_map import EmbeddingMapConfig, embedding_map
from app.recsys.folding import folding_diagnostics
from app.recsys.index import IndexConfig, ItemIndex, build_index
from app.recsys.interactions import Interactions
from app.recsys.metrics import popularity_metrics, ranking_metrics
from app.recsys.split import split
from app.services import checkpoints, job_state
from app.services.algorithms import Plan, chosen_spec, default_steps, plan_for, search_space
from app.services.datasets import StoredDataset, load_dataset
from app.services.embedding_maps import EMBEDDING_MAP_FILE
from app.services.progress import JobProgress, StepProgress, planned_phases
from app.spec import TrainingSpec
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

# Per-step metrics use a sample of test users so tracking stays cheap on big data;
# the final metrics use every test user.
TRACKING_USERS = 1000


def _fit(
    data: Interactions,
    plan: Plan,
    job: JobProgress,
    phase: str,
    spec: TrainingSpec,
    test: Interactions | None,
    checkpointer: checkpoints.Checkpointer | None = None,
) -> tuple[EmbeddingModel, StepProgress]:
    reporter = job.reporter
    evaluator = _test_evaluator(data, test, spec)
    resumed = checkpointer.resume_state(phase) if checkpointer is not None else None
    progress = StepProgress(job, phase, plan.steps, spec, resumed)
    on_state: StateCallback | None = None
    if checkpointer is not None:
        saver = checkpointer

        def on_state(step: int, capture: Callable[[], TrainingState]) -> None:
            if saver.due():
                state = checkpoints.Checkpoint(
                    phase, capture(), list(reporter.history), progress.early_stopping_state(), saver.fit_result
                )
                saver.save(state)

    model = plan.fit(
        data,
        plan.config,
        progress,
        evaluator,
        resume=resumed.state if resumed is not None else None,
        on_state=on_state,
        interrupt=reporter.interrupt,
    )
    if resumed is not None and not progress.reported:
        progress.resumed_at_the_end(resumed)
    return model, progress


def _search(
    data: Interactions, spec: TrainingSpec, job: JobProgress, test: Interactions | None, budget: float
) -> tuple[TrainingSpec, EmbeddingModel, dict[str, Any]] | None:
    """Choose what the spec leaves out on a validation split of `data` and train on all of it (autotune.py);
    None when there is nothing to choose or too little data to choose on. Returns the spec with the choice
    written in, the model, and the search's report. Every candidate tried becomes a history entry (phase
    "search"); the final fit is followed like any fit (phase "fit", with test metrics). A crashed attempt
    searches again: the search is deterministic, so it makes the same choice."""
    space = search_space(spec, data)
    if space is None:
        return None
    config = AutotuneConfig(
        budget=spec.search.budget or budget, validation_fraction=spec.search.validation_fraction, seed=spec.seed
    )
    trials = 0

    def progress(stage: str, done: float, planned: float, record: dict[str, Any]) -> None:
        nonlocal trials
        job.weigh("search", planned)
        fraction = min(done / planned, 1.0) if planned else 1.0
        if stage == "final":  # the final fit's own progress reports it (phase "fit")
            job.done["search"] = fraction
            return
        snapshot = job.snapshot("search", fraction, int(record.get("step", 0)), space.max_steps,
                                metrics=record.get("metrics") or {}, search_stage=stage)  # fmt: skip
        entry = None
        if stage == "trial":
            trials += 1
            entry = {"step": trials, "phase": "search", "loss": None, "seconds": None, "metrics": {}, **record}
        job.reporter.report(snapshot, entry)

    final = StepProgress(job, "fit", space.max_steps, spec)
    outcome = autotune(
        data, space, spec.dim, config, progress, job.reporter.interrupt, (final, _test_evaluator(data, test, spec))
    )
    if outcome is None:
        return None
    job.warnings.extend(outcome.warnings)
    return chosen_spec(spec, outcome, data), outcome.model, outcome.report()


def _test_evaluator(data: Interactions, test: Interactions | None, spec: TrainingSpec) -> Evaluator | None:
    """Per-step held-out metrics, on a sample of test users so tracking stays cheap on big data."""
    if test is None or not test.nnz:
        return None
    ks = tuple(spec.evaluation.k)

    def evaluator(U: np.ndarray, V: np.ndarray) -> dict[str, float]:
        return ranking_metrics(U, V, data, test, ks, max_users=TRACKING_USERS, seed=spec.seed)

    return evaluator


def _fit_or_search(
    data: Interactions,
    spec: TrainingSpec,
    job: JobProgress,
    test: Interactions | None,
    checkpointer: checkpoints.Checkpointer | None,
    budget: float,
) -> tuple[TrainingSpec, EmbeddingModel, dict[str, Any] | None, int]:
    """The model trained on `data`: with the search when the spec asks for it, else with the spec's values.
    Returns the spec the model was trained with, the model, the search report and early stopping's best step."""
    if spec.search.mode == "auto":
        searched = _search(data, spec, job, test, budget)
        if searched is not None:
            job.weigh("fit", 0.0)
            return searched[0], searched[1], searched[2], 0
    job.weigh("search", 0.0)
    job.weigh("fit", 1.0)
    model, progress = _fit(data, plan_for(spec, data), job, "fit", spec, test, checkpointer)
    return spec, model, None, progress.best_step if spec.early_stopping else 0


def open_checkpoints(
    store: ArtifactStore, job: Job, dataset: Dataset, reporter: job_state.JobReporter, every: float | None
) -> checkpoints.Checkpointer | None:
    """This attempt's checkpointer (None: checkpoints off); a checkpoint found gives the reporter its history back."""
    if every is None:
        return None
    checkpointer = checkpoints.Checkpointer(store, job.id, checkpoints.fingerprint(job.spec, dataset.checksum), every)
    found = checkpointer.resumed
    if found is not None:
        reporter.history = list(found.history)
        reporter.resumed_from = {"phase": found.phase, "step": found.step, "attempt": reporter.lease.attempt}
        reporter.write_history()
        log.info(
            "job %s: attempt %d resumes from its checkpoint (%s, step %d)",
            job.id,
            reporter.lease.attempt,
            found.phase,
            found.step,
        )
    return checkpointer


def fit_and_score(
    data: Interactions,
    held_out: Interactions,
    spec: TrainingSpec,
    reporter: job_state.JobReporter,
    checkpointer: checkpoints.Checkpointer | None = None,
) -> dict[str, float]:
    """Fit on `data` with progress and early stopping, score every held-out user; no artifact (tuning trials)."""
    job = JobProgress(reporter, {"fit": 1.0}, plan_for(spec).unit)
    model, _ = _fit(data, plan_for(spec, data), job, "fit", spec, held_out, checkpointer)
    return ranking_metrics(model.user_factors, model.item_factors, data, held_out, tuple(spec.evaluation.k))


def train_model(
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    job: Job,
    reporter: job_state.JobReporter,
    checkpoint_seconds: float | None = None,
    search_budget: float = 3.0,
) -> Model:
    """Choose the settings the spec leaves out (or take its values), fit, evaluate and (when a split was held
    out) refit on all data; store the artifact.

    With `checkpoint_seconds` (None: no checkpoints) the training state is saved at most that often
    and a checkpoint left by an earlier attempt is resumed; a model an earlier attempt already
    published is returned as it is. `search_budget` is the search's budget when the spec names none.
    """
    model_id = job_state.model_id_for(job.id)
    key = f"models/{model_id}"
    published = _published_meta(store, key, job.id)
    if published is not None:
        _restore_finished(reporter, published)
        log.info("job %s: model %s was published by an earlier attempt; recording it", job.id, model_id)
        return _model_row(job, published, key)
    spec = TrainingSpec.model_validate(job.spec)
    with sessions() as session:
        dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise LookupError(f"dataset {job.dataset_id!r} no longer exists")
    checkpointer = open_checkpoints(store, job, dataset, reporter, checkpoint_seconds)
    stored = load_dataset(store, dataset)
    full = stored.interactions
    ev = spec.evaluation
    metrics: dict[str, Any] = {}
    progress = JobProgress(reporter, planned_phases(spec, spec.search.mode == "auto"), plan_for(spec).unit)
    if ev.split == "none":
        spec, model, search, _ = _fit_or_search(full, spec, progress, None, checkpointer, search_budget)
        plan = plan_for(spec, full)
        if search is not None:
            metrics["search"] = search
        metrics["folding"] = folding_diagnostics(
            model.user_factors, model.item_factors, full, None, stored.item_groups, seed=spec.seed
        )
    else:
        train, test = split(full, ev.split, ev.test_fraction, spec.seed)
        if test.nnz == 0:
            raise ValueError(f"evaluation.split {ev.split!r} left no test interactions")
        fitted = checkpointer.fit_result if checkpointer is not None else None
        if fitted is None:
            spec, model, search, best_step = _fit_or_search(train, spec, progress, test, checkpointer, search_budget)
            ks = tuple(ev.k)
            metrics.update(ranking_metrics(model.user_factors, model.item_factors, train, test, ks))
            metrics["baseline"] = {"popularity": popularity_metrics(train, test, ks)}
            metrics["evaluated_users"] = int(np.count_nonzero(np.diff(test.indptr)))
            metrics["folding"] = folding_diagnostics(
                model.user_factors, model.item_factors, train, test, stored.item_groups, seed=spec.seed
            )
            if search is not None:
                metrics["search"] = search
            progress.warnings.extend(_baseline_warnings(metrics, ks))
            progress.report("evaluate", 1.0, 0, 0, metrics=_flat_ranking(metrics))
            # The spec with every searched value written in: a crash in the refit refits the same model.
            fitted = {"metrics": metrics, "best_step": best_step, "spec": spec.model_dump(mode="json")}
            if checkpointer is not None:
                # The phase boundary, saved whatever the throttle says: a crash in the refit keeps the evaluation.
                checkpointer.fit_result = fitted
                checkpointer.save(checkpoints.Checkpoint("refit", None, list(reporter.history), {}, fitted))
        else:
            metrics = dict(fitted["metrics"])
            if "spec" in fitted:
                spec = TrainingSpec.model_validate(fitted["spec"])
            progress.warnings.extend(metrics.get("warnings", []))
        # Values chosen from the data look at the training part only; the refit keeps them.
        plan = plan_for(spec, train)
        # The served model learns from every interaction; held-out metrics above stay honest
        # because they come from the model that never saw the test split.
        if spec.early_stopping and fitted["best_step"]:
            plan = plan.with_steps(int(fitted["best_step"]))
        progress.weigh("refit", plan.steps / default_steps(spec.algorithm))
        model, _ = _fit(full, plan, progress, "refit", spec, None, checkpointer)
    if progress.warnings:
        metrics["warnings"] = list(dict.fromkeys(progress.warnings))
    if reporter.cancel_requested():
        raise job_state.JobCancelled("cancelled by request")

    resolved = {**spec.model_dump(mode="json"), spec.algorithm: plan.resolved()}
    resolved.pop("sgd" if spec.algorithm == "wals" else "wals", None)
    progress.report("publish", 0.0, 0, 0)
    staged = store.staging_dir()
    try:
        index = _build_index(model, spec)
        index.save(staged)
        meta: dict[str, Any] = {
            "id": model_id,
            "job_id": job.id,
            "algorithm": spec.algorithm,
            "dim": spec.dim,
            "spec": resolved,
            "fold_in": _fold_in_parameters(resolved),
            "metrics": metrics,
            "history": reporter.history,
            "dataset_id": dataset.id,
            "index": index.describe(),
            "resumed_from": reporter.resumed_from,
        }
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
                meta=meta,
            ),
        )
        store.publish_dir(key, staged)
    except BaseException:
        store.discard(staged)
        raise
    progress.finished()
    return _model_row(job, meta, key)


def _baseline_warnings(metrics: dict[str, Any], ks: tuple[int, ...]) -> list[str]:
    """Said loudly: a model that ranks no better than most-popular items on validation or on test."""
    warnings = list((metrics.get("search") or {}).get("warnings", []))
    k = max(ks)
    ours, popular = metrics.get(f"recall@{k}"), metrics.get("baseline", {}).get("popularity", {}).get(f"recall@{k}")
    if ours is not None and popular is not None and not ours > popular:
        warnings.append(
            f"the model does not beat the popularity baseline on the held-out split (recall@{k} {ours:.4f} "
            f"against {popular:.4f})"
        )
    return warnings


def _flat_ranking(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: value for name, value in metrics.items() if isinstance(value, float)}


def _restore_finished(reporter: job_state.JobReporter, meta: dict[str, Any]) -> None:
    """The job's history and final progress from its published model: it resumes after its last step."""
    reporter.history = list(meta.get("history") or [])
    last = reporter.history[-1] if reporter.history else {"step": 0, "phase": "fit", "loss": None, "metrics": {}}
    reporter.resumed_from = {"phase": last["phase"], "step": last["step"], "attempt": reporter.lease.attempt}
    progress = {
        "step": last["step"],
        "total_steps": last["step"],
        "fraction": 1.0,
        "unit": "iteration" if meta.get("algorithm") == "wals" else "epoch",
        "phase": last["phase"],
        "eta_seconds": 0.0,
        "loss": last.get("loss"),
        "metrics": last.get("metrics") or {},
    }
    reporter.report(progress, None)


def _model_row(job: Job, meta: dict[str, Any], key: str) -> Model:
    """The model's row, from the metadata its artifact carries (the same for a fresh and a recovered model)."""
    return Model(
        id=meta["id"],
        tenant=job.tenant,  # the model belongs to whoever submitted the job
        job_id=job.id,
        dataset_id=meta["dataset_id"],
        algorithm=meta["algorithm"],
        dim=int(meta["dim"]),
        spec=meta["spec"],
        metrics=meta["metrics"],
        index=meta["index"],
        artifact_key=key,
    )


def _published_meta(store: ArtifactStore, key: str, job_id: str) -> dict[str, Any] | None:
    """The metadata of this job's model when an earlier attempt published it whole, else None."""
    if not store.exists(key):
        return None
    try:
        meta: dict[str, Any] = json.loads((store.local_dir(key) / META).read_text())
    except (FileNotFoundError, ValueError):
        return None
    # Without what its row needs (or from another job), the model is trained and published again.
    if meta.get("job_id") != job_id or not {"index", "dim", "spec", "metrics", "dataset_id"} <= set(meta):
        return None
    return meta


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
    checkpoint_seconds: float | None = None,
    search_budget: float = 3.0,
) -> str:
    """Claim and run a job to a final status; returns what happened (for logs and tests).

    "lost" means another worker took the job over while this one ran (it was taken for dead):
    this attempt then leaves the row, its checkpoint and any published model to that worker.
    """
    lease = job_state.claim(sessions, job_id, worker, stale_after=job_state.stale_after(heartbeat_seconds))
    if lease is None:
        _after_skip(sessions, store, job_id)
        log.info("job %s not claimed (finished, cancelled or running elsewhere)", job_id)
        return "skipped"
    with sessions() as session:
        job = session.get(Job, job_id)
    assert job is not None
    model_key = f"models/{job_state.model_id_for(job_id)}"
    try:
        with job_state.JobReporter(sessions, lease, heartbeat_seconds) as reporter:
            model = train_model(sessions, store, job, reporter, checkpoint_seconds, search_budget)
            # The published model now survives a crash on its own: the checkpoint is no longer needed.
            if job_state.holds(sessions, lease):
                checkpoints.delete(store, job_id)
        if job_state.succeed(sessions, lease, model):
            log.info("job %s succeeded: model %s", job_id, model.id)
            return "succeeded"
        if not job_state.holds(sessions, lease):
            raise job_state.LeaseLost(f"job {job_id}: lost before its success was recorded")
        _discard(sessions, store, lease, model_key)
        job_state.finish(sessions, job_id, "cancelled", lease)
        return "cancelled"
    except job_state.LeaseLost:
        log.warning("job %s: attempt %d was taken over by another worker; leaving it", job_id, lease.attempt)
        return "lost"
    except job_state.JobCancelled:
        _discard(sessions, store, lease, model_key)
        job_state.finish(sessions, job_id, "cancelled", lease)
        log.info("job %s cancelled", job_id)
        return "cancelled"
    except Exception as exc:  # the job records every failure; nothing is left "running"
        log.exception("job %s failed", job_id)
        _discard(sessions, store, lease, model_key)
        job_state.finish(sessions, job_id, "failed", lease, error={"type": type(exc).__name__, "message": str(exc)})
        return "failed"


def _discard(sessions: sessionmaker[Session], store: ArtifactStore, lease: job_state.Lease, model_key: str) -> None:
    """A job ending without a model leaves nothing behind: no checkpoint, no published model.

    Deleted before the final status is written: a crash in between leaves a running job that is
    sent again and ends the same way, never a finished job with leftovers nobody will delete.
    """
    if not job_state.holds(sessions, lease):
        return  # another worker's job now: its checkpoint is its own
    checkpoints.delete(store, lease.job_id)
    try:
        store.delete(model_key)
    except Exception:  # the outcome is recorded all the same; an orphan artifact is only space
        log.warning("job %s: could not delete its unfinished model %s", lease.job_id, model_key, exc_info=True)


def _after_skip(sessions: sessionmaker[Session], store: ArtifactStore, job_id: str) -> None:
    """A delivery that did not claim its job: end a cancelled queued job, and clean up after a finished one
    (a late delivery is how a job cancelled or failed while it waited for a worker loses its checkpoint)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        if job.status == "queued" and job.cancel_requested:
            job_state.finish(sessions, job_id, "cancelled")
            session.refresh(job)
        if job.status in job_state.FINISHED:
            checkpoints.delete(store, job_id)
            if job.status != "succeeded":
                try:
                    store.delete(f"models/{job_state.model_id_for(job_id)}")
                except Exception:
                    log.warning("job %s: could not delete its unfinished model", job_id, exc_info=True)
