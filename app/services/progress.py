"""A training job's progress: one bar over all of its phases, and the per-step callback that feeds it.

A job runs phases of very different lengths (the settings search, the fit, its evaluation, the refit on
every interaction, the index build). Each phase gets a weight in fits with fixed settings, the search's
unit of account (app/recsys/autotune.py), so `fraction` and `eta_seconds` cover the whole job and never
start again at a phase boundary; `phase_fraction` says how far the current phase is.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.services import checkpoints, job_state
from app.spec import TrainingSpec

# Weights of the short phases, in fixed fits (measured: evaluation and the index are a few % of a fit).
EVALUATE_WEIGHT = 0.05
PUBLISH_WEIGHT = 0.05


def planned_phases(spec: TrainingSpec, searching: bool, fit_weight: float = 1.0) -> dict[str, float]:
    """Every phase this job will run, in order, with its planned weight (the search's is re-planned once it
    knows its budget; the refit's once the best step count is known). Weights are in fits of the search's
    unit (algorithms.Plan.weight): `fit_weight` is the spec's own fit in it, and its refit's until then."""
    phases: dict[str, float] = {}
    if searching:
        phases["search"] = float(spec.search.budget or 3.0)
    else:
        phases["fit"] = fit_weight
    if spec.evaluation.split != "none":
        phases["evaluate"] = EVALUATE_WEIGHT
        phases["refit"] = 1.0 if searching else fit_weight
    phases["publish"] = PUBLISH_WEIGHT
    return phases


def progress_snapshot(
    step: int,
    total_steps: int,
    fraction: float,
    phase: str,
    phase_fraction: float,
    unit: str,
    eta_seconds: float | None,
    loss: float | None = None,
    metrics: dict[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one shape of a job's `progress` (GET /v1/jobs/{id}), rounded as it is stored."""
    return {
        "step": step,
        "total_steps": total_steps,
        "fraction": round(fraction, 4),
        "phase": phase,
        "phase_fraction": round(phase_fraction, 4),
        "unit": unit,
        "eta_seconds": None if eta_seconds is None else round(eta_seconds, 3),
        "loss": loss,
        "metrics": metrics or {},
        **extra,
    }


class JobProgress:
    """The whole job's fraction and ETA from each phase's own fraction (see the module doc)."""

    def __init__(self, reporter: job_state.JobReporter, phases: dict[str, float], unit: str) -> None:
        self.reporter, self.unit = reporter, unit
        self.weights = dict(phases)
        self.done = dict.fromkeys(phases, 0.0)
        self.started = time.monotonic()
        self.warnings: list[str] = []

    def weigh(self, phase: str, weight: float) -> None:
        """A phase's weight once it is known better (never for a phase already under way elsewhere)."""
        self.weights[phase] = max(float(weight), 0.0)
        self.done.setdefault(phase, 0.0)

    def fraction(self) -> float:
        total = sum(self.weights.values())
        return sum(w * self.done[p] for p, w in self.weights.items()) / total if total > 0 else 0.0

    def snapshot(
        self,
        phase: str,
        phase_fraction: float,
        step: int,
        total_steps: int,
        loss: float | None = None,
        metrics: dict[str, float] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The job's `progress` after moving `phase` to `phase_fraction`."""
        self.done[phase] = min(max(phase_fraction, self.done.get(phase, 0.0)), 1.0)
        self.weights.setdefault(phase, 0.0)
        fraction = self.fraction()
        elapsed = time.monotonic() - self.started
        eta = elapsed * (1.0 - fraction) / fraction if fraction > 0 else None
        progress = progress_snapshot(
            step, total_steps, fraction, phase, self.done[phase], self.unit, eta, loss, metrics, **extra
        )
        if self.warnings:
            progress["warnings"] = list(self.warnings)
        return progress

    def report(self, phase: str, phase_fraction: float, step: int, total_steps: int, **values: Any) -> None:
        self.reporter.report(self.snapshot(phase, phase_fraction, step, total_steps, **values), None)

    def finished(self) -> None:
        """Every phase done: the bar reads 1 and the ETA 0."""
        for phase in self.done:
            self.done[phase] = 1.0
        last = self.reporter.history[-1] if self.reporter.history else {}
        step = int(last.get("step", 0))
        # The finished job shows where its training ended ("refit iteration 6 of 6"), not the publish step.
        phase = last.get("phase", "publish")
        self.report(phase, 1.0, step, step, loss=last.get("loss"), metrics=last.get("metrics") or {})


class StepProgress:
    """Turns the core's per-step callback into job progress, history and early stopping for one phase."""

    def __init__(
        self,
        job: JobProgress,
        phase: str,
        total: int,
        spec: TrainingSpec,
        resumed: checkpoints.Checkpoint | None = None,
    ) -> None:
        self.job, self.reporter, self.phase, self.total = job, job.reporter, phase, total
        self.early = spec.early_stopping if phase == "fit" else None
        self.best_value = -np.inf
        self.best_step = 0
        # A resumed phase starts after its checkpoint's step, with early stopping's best so far.
        self.first_step = resumed.step if resumed is not None else 0
        if resumed is not None and resumed.early_stopping:
            self.best_value = float(resumed.early_stopping["best_value"])
            self.best_step = int(resumed.early_stopping["best_step"])
        self.last = time.monotonic()
        self.reported = 0

    def early_stopping_state(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step}

    def resumed_at_the_end(self, resumed: checkpoints.Checkpoint) -> None:
        """A phase resumed after its last step runs no step: still show where it stands."""
        last: dict[str, Any] = next((h for h in reversed(resumed.history) if h.get("phase") == self.phase), {})
        fraction = min(resumed.step / self.total, 1.0)
        self.job.report(
            self.phase, fraction, resumed.step, self.total, loss=last.get("loss"), metrics=last.get("metrics") or {}
        )

    def __call__(self, step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> bool:
        now = time.monotonic()
        seconds, self.last = now - self.last, now
        progress = self.job.snapshot(self.phase, step / self.total, step, self.total, loss=loss, metrics=metrics)
        entry = {"step": step, "phase": self.phase, "loss": loss, "seconds": round(seconds, 4), "metrics": metrics}
        self.reporter.report(progress, entry)
        self.reported += 1
        if self.early is not None and self.early.metric in metrics:
            value = metrics[self.early.metric]
            if value > self.best_value:
                self.best_value, self.best_step = value, step
            elif step - self.best_step >= self.early.patience:
                return True
        return False
