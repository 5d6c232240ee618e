"""A job's model from its dataset: choose or take the settings, fit, evaluate on the held-out split, refit.

With `evaluation.split` "none" the fit on every interaction is the model. Otherwise the model fitted on
the training part is scored on the test part (against the popularity baseline), and the served model is
refit on every interaction with the same settings (and early stopping's best step): the metrics stay
honest because they come from a model that never saw the test split. The evaluation is checkpointed at
the phase boundary, so a crash in the refit keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from app.recsys.base import EmbeddingModel
from app.recsys.folding_diagnostics import folding_diagnostics
from app.recsys.interactions import Interactions
from app.recsys.metrics import popularity_metrics, ranking_metrics
from app.recsys.split import split
from app.services import checkpoints
from app.services.algorithms import Fit, Plan, plan_for
from app.services.datasets import StoredDataset
from app.services.fitting import fit_or_search, fit_phase
from app.services.progress import JobProgress
from app.spec import TrainingSpec


@dataclass(frozen=True)
class Trained:
    """The served model and what the job learnt making it."""

    spec: TrainingSpec  # with every searched value written in
    plan: Plan  # the plan of the model served (its config is the model's resolved spec)
    model: EmbeddingModel
    metrics: dict[str, Any]


def train_evaluate_refit(
    stored: StoredDataset,
    spec: TrainingSpec,
    progress: JobProgress,
    checkpointer: checkpoints.Checkpointer | None,
    search_budget: float,
    fit: Fit | None = None,
) -> Trained:
    """The model served for `spec` on `stored`, with its held-out metrics when a split was held out; `fit`
    replaces the algorithm's own fit for every fit (a distributed job's ranks)."""
    full = stored.interactions
    ev = spec.evaluation
    metrics: dict[str, Any] = {}
    if ev.split == "none":
        spec, model, search, _ = fit_or_search(full, spec, progress, None, checkpointer, search_budget, fit)
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
            spec, model, search, best_step = fit_or_search(
                train, spec, progress, test, checkpointer, search_budget, fit
            )
            metrics = _evaluate(model, train, test, stored, spec, search)
            progress.warnings.extend(_baseline_warnings(metrics, tuple(ev.k)))
            progress.report("evaluate", 1.0, 0, 0, metrics=_flat_ranking(metrics))
            # The spec with every searched value written in: a crash in the refit refits the same model.
            fitted = {"metrics": metrics, "best_step": best_step, "spec": spec.model_dump(mode="json")}
            if checkpointer is not None:
                # The phase boundary, saved whatever the throttle says: a crash in the refit keeps the evaluation.
                checkpointer.fit_result = fitted
                checkpointer.save(checkpoints.Checkpoint("refit", None, list(progress.reporter.history), {}, fitted))
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
        progress.weigh("refit", plan.weight)
        model, _ = fit_phase(full, plan if fit is None else replace(plan, fit=fit), progress, "refit", spec, None,
                             checkpointer)  # fmt: skip
    if progress.warnings:
        metrics["warnings"] = list(dict.fromkeys(progress.warnings))
    return Trained(spec, plan, model, metrics)


def _evaluate(
    model: EmbeddingModel,
    train: Interactions,
    test: Interactions,
    stored: StoredDataset,
    spec: TrainingSpec,
    search: dict[str, Any] | None,
) -> dict[str, Any]:
    """Held-out metrics of the model fitted on `train`, every test user scored, beside the popularity baseline."""
    ks = tuple(spec.evaluation.k)
    metrics: dict[str, Any] = dict(ranking_metrics(model.user_factors, model.item_factors, train, test, ks))
    metrics["baseline"] = {"popularity": popularity_metrics(train, test, ks)}
    metrics["evaluated_users"] = int(np.count_nonzero(np.diff(test.indptr)))
    metrics["folding"] = folding_diagnostics(
        model.user_factors, model.item_factors, train, test, stored.item_groups, seed=spec.seed
    )
    if search is not None:
        metrics["search"] = search
    return metrics


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
