"""One fit of a job's model with progress, early stopping and checkpoints, or the settings search that
replaces it when the spec asks Unfold to choose (shared by training jobs and tuning trials)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from app.models import Dataset, Job
from app.recsys.autotune import AutotuneConfig, autotune
from app.recsys.base import EmbeddingModel, Evaluator, StateCallback, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.metrics import ranking_metrics
from app.services import checkpoints, job_state
from app.services.algorithms import Fit, Plan, chosen_spec, plan_for, search_space
from app.services.progress import JobProgress, StepProgress
from app.spec import TrainingSpec
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

# Per-step metrics use a sample of test users so tracking stays cheap on big data;
# the final metrics use every test user.
TRACKING_USERS = 1000


def fit_phase(
    data: Interactions,
    plan: Plan,
    job: JobProgress,
    phase: str,
    spec: TrainingSpec,
    test: Interactions | None,
    checkpointer: checkpoints.Checkpointer | None = None,
) -> tuple[EmbeddingModel, StepProgress]:
    """Fit `plan` on `data` as the job's phase `phase`, resuming its checkpoint when there is one."""
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


def fit_or_search(
    data: Interactions,
    spec: TrainingSpec,
    job: JobProgress,
    test: Interactions | None,
    checkpointer: checkpoints.Checkpointer | None,
    budget: float,
    fit: Fit | None = None,
) -> tuple[TrainingSpec, EmbeddingModel, dict[str, Any] | None, int]:
    """The model trained on `data`: with the search when the spec asks for it, else with the spec's values.
    Returns the spec the model was trained with, the model, the search report and early stopping's best step.
    `fit` replaces the algorithm's own fit (a distributed job's ranks: distributed.Coordinator.fit)."""
    if spec.search.mode == "auto":
        searched = _search(data, spec, job, test, budget)
        if searched is not None:
            job.weigh("fit", 0.0)
            return searched[0], searched[1], searched[2], 0
    job.weigh("search", 0.0)
    plan = plan_for(spec, data)
    # In the unit the refit is weighed in (pipeline.py), so a fit and its refit of as many steps weigh the same.
    job.weigh("fit", plan.weight)
    model, progress = fit_phase(data, plan if fit is None else replace(plan, fit=fit), job, "fit", spec, test,
                                checkpointer)  # fmt: skip
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
    model, _ = fit_phase(data, plan_for(spec, data), job, "fit", spec, held_out, checkpointer)
    return ranking_metrics(model.user_factors, model.item_factors, data, held_out, tuple(spec.evaluation.k))
