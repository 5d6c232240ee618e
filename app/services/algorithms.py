"""From a training spec to the core: each algorithm's config builder, fit function and resolved spec.

Imported by the worker only (it pulls in torch through the fit functions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import numpy as np

from app.recsys import wals_defaults as defaults
from app.recsys.autotune import Outcome, Space
from app.recsys.base import Callback, EmbeddingModel, Evaluator, Interrupt, StateCallback, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.sgd import fit_sgd
from app.recsys.sgd_config import (
    RECIPE_L2,
    RECIPE_LEARNING_RATE,
    SEARCH_MAX_EPOCHS,
    SGDConfig,
    sgd_config_from_spec,
)
from app.recsys.wals import WALSConfig, fit_wals
from app.recsys.wals_defaults import capped_l2, interaction_shrinkage, l2_for_shrinkage, search_axes
from app.spec import TrainingSpec


class Fit(Protocol):
    """The core's one training interface (fit_wals, fit_sgd)."""

    def __call__(
        self,
        train: Interactions,
        config: Any,
        callback: Callback | None = None,
        evaluator: Evaluator | None = None,
        *,
        resume: TrainingState | None = None,
        on_state: StateCallback | None = None,
        interrupt: Interrupt | None = None,
    ) -> EmbeddingModel: ...


@dataclass(frozen=True)
class Plan:
    """How one job trains: the core config, its fit function and the unit of a step."""

    config: Any
    fit: Fit
    unit: str  # "iteration" | "epoch"

    @property
    def steps(self) -> int:
        return int(self.config.iterations if self.unit == "iteration" else self.config.epochs)

    @property
    def weight(self) -> float:
        """This fit in fits of the search's unit (default_steps): the weight of a job's fit or refit phase."""
        return self.steps / default_steps("wals" if self.unit == "iteration" else "sgd")

    def with_steps(self, steps: int) -> Plan:
        field = "iterations" if self.unit == "iteration" else "epochs"
        return replace(self, config=replace(self.config, **{field: steps}))

    def resolved_spec(self, spec: TrainingSpec) -> dict[str, Any]:
        """The spec as trained (the model's `spec`): its algorithm's block with every value Unfold chose
        filled in, and no block of the other algorithm."""
        resolved = {**spec.model_dump(mode="json"), spec.algorithm: self._algorithm_block()}
        resolved.pop("sgd" if spec.algorithm == "wals" else "wals", None)
        return resolved

    def _algorithm_block(self) -> dict[str, Any]:
        config = asdict(self.config)
        for key in ("dim", "seed", "device", "init_scale"):
            config.pop(key, None)
        if isinstance(self.config, WALSConfig):
            config["confidence"] = {
                "scheme": config.pop("confidence"),
                "alpha": config.pop("alpha"),
                "eps": config.pop("eps"),
            }
        return config


def wals_config(spec: TrainingSpec, data: Interactions | None = None) -> WALSConfig:
    """The core's WALS config: given fields win, omitted ones take the recommended settings (wals_defaults.py),
    with λ lowered from this data where the recommended one would over-shrink."""
    w = spec.wals

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    scaling = w.l2_scaling or defaults.L2_SCALING
    unobserved_weight = pick(w.unobserved_weight, defaults.UNOBSERVED_WEIGHT[scaling])
    alpha = pick(w.confidence.alpha, defaults.ALPHA)
    scheme = pick(w.confidence.scheme, defaults.CONFIDENCE)
    l2 = pick(w.l2, defaults.L2[scaling])
    if w.l2 is None and data is not None and data.nnz:
        shrinkage = interaction_shrinkage(
            data, l2, unobserved_weight, scaling, w.l2_exponent, scheme, alpha, w.confidence.eps
        )
        l2 = capped_l2(l2, shrinkage)
    return WALSConfig(
        dim=spec.dim,
        iterations=pick(w.iterations, defaults.ITERATIONS),
        l2=l2,
        l2_scaling=scaling,
        l2_exponent=w.l2_exponent,
        unobserved_weight=unobserved_weight,
        confidence=scheme,
        alpha=alpha,
        eps=w.confidence.eps,
        solver=w.solver,
        cg_steps=w.cg_steps,
        seed=spec.seed,
    )


def plan_for(spec: TrainingSpec, data: Interactions | None = None) -> Plan:
    """The training plan of a spec; omitted values that depend on the data are chosen from `data`."""
    if spec.algorithm == "wals":
        return Plan(wals_config(spec, data), fit_wals, "iteration")
    config: SGDConfig = sgd_config_from_spec(spec.sgd.model_dump(), dim=spec.dim, seed=spec.seed)
    return Plan(config, fit_sgd, "epoch")


def default_steps(algorithm: str) -> int:
    """The unit of the search's budget and of a job's phase weights: a fit of this many steps (WALS: a fit with
    fixed settings; SGD: the search's ceiling, above the recipe's fixed epochs)."""
    return defaults.ITERATIONS if algorithm == "wals" else SEARCH_MAX_EPOCHS


def search_space(spec: TrainingSpec, data: Interactions) -> Space | None:
    """What the search may choose for this spec (None: the spec's values are trained as they are)."""
    if spec.search.mode != "auto":
        return None
    if spec.algorithm == "wals":
        return wals_search_space(spec, data, default_steps("wals"))
    return sgd_search_space(spec)


# The SGD search sweeps the step size first (an under-trained model mixes communities as random does: 4× and
# 16× the recipe's rate are on the axis), then l2; epochs come from the winner's validation curve.
SGD_RATE_FACTORS = (1.0, 4.0, 16.0, 0.25)
SGD_L2_FACTORS = (1.0, 0.1, 0.01)


def sgd_search_space(spec: TrainingSpec) -> Space:
    """What the search may vary in an SGD spec: the learning rate, l2 and epochs it leaves out."""
    block = spec.sgd
    rate = RECIPE_LEARNING_RATE.get(block.optimizer, RECIPE_LEARNING_RATE["adam"])
    axes: list[tuple[str, tuple[Any, ...]]] = []
    if block.learning_rate is None:
        axes.append(("learning_rate", tuple(rate * f for f in SGD_RATE_FACTORS)))
    if block.l2 is None:
        axes.append(("l2", tuple(RECIPE_L2 * f for f in SGD_L2_FACTORS)))

    def config_for(params: dict[str, Any], part: Interactions, dim: int, steps: int) -> SGDConfig:
        fields = {**block.model_dump(), **params, "epochs": steps}
        return sgd_config_from_spec(fields, dim=dim, seed=spec.seed)

    return Space(
        algorithm="sgd",
        axes=axes,
        config_for=config_for,
        fit=fit_sgd,
        step_cost=_sgd_step_cost,
        default_steps=SEARCH_MAX_EPOCHS,
        max_steps=block.epochs or SEARCH_MAX_EPOCHS,
        steps_named=block.epochs is not None,
        warm_state=_warm_state,
        rung_steps=2,
    )


def _sgd_step_cost(config: SGDConfig, data: Interactions) -> float:
    """Work of one SGD epoch: per positive, its own negatives' and (in-batch) the batch's dim-long products,
    forward, backward and the update, plus each example's fixed cost (sampling, gathers, scattered updates:
    SGD_EXAMPLE_COST, fitted to bce-uniform epochs on planted data and ml-100k) — the search's unit of
    account (autotune.py)."""
    negatives = config.negatives
    scored = 1 + negatives.n_private + (config.batch_size if negatives.strategy in ("in_batch", "mixed") else 0)
    examples = 1 + negatives.n_private
    return data.nnz * (6.0 * (config.dim + 16) * scored + SGD_EXAMPLE_COST * examples) + STEP_OVERHEAD


SGD_EXAMPLE_COST = 4000.0
# A step's fixed cost whatever the data (dispatch, the objective, callbacks): ~10 ms on ml-100k, where it is
# as much as the arithmetic; without it evaluations look dear next to small steps and buy no search.
STEP_OVERHEAD = 5e7


def _wals_step_cost(config: WALSConfig, data: Interactions) -> float:
    """Work of one WALS iteration: per nonzero a few dim-long products per CG step, per row the dense d × d part
    of every CG step (the search's unit of account, autotune.py)."""
    # The +16 and +64 are each nonzero's and row's fixed work whatever the dim (loop and memory overhead): without
    # them a small proxy dim looks nearly free, which it is not on small data (fitted to ml-100k..amazon timings).
    d, cg = config.dim, config.cg_steps
    rows = 2.0 * (data.n_users + data.n_items) * (d * d + 64) * (cg + 1)
    return 2.0 * data.nnz * (d + 16) * (cg + 2) + rows + STEP_OVERHEAD


def _warm_state(state: TrainingState) -> TrainingState:
    """A state to continue from on other data: the same arrays (factors, optimiser, sampler), from step 0."""
    return TrainingState(state.algorithm, 0, state.arrays, {"history": [], "elapsed": 0.0})


def wals_search_space(spec: TrainingSpec, data: Interactions, max_iterations: int) -> Space:
    """What the search may vary in a WALS spec: what it left out, along wals_defaults' axes."""
    w = spec.wals
    named = {
        "l2_scaling": w.l2_scaling,
        "scheme": w.confidence.scheme,
        "alpha": w.confidence.alpha,
        "unobserved_weight": w.unobserved_weight,
        "l2": w.l2,
    }
    weighted = bool(data.nnz) and not bool(np.all(data.weights == data.weights[0]))
    # λ from a shrinkage is a pass over the data: once per candidate and data part, not per call.
    memo: dict[tuple[Any, ...], WALSConfig] = {}

    def config_for(params: dict[str, Any], part: Interactions, dim: int, steps: int) -> WALSConfig:
        key = (tuple(sorted(params.items())), id(part))
        if key not in memo:
            memo[key] = searched_config(spec, params, part, dim, steps)
        return replace(memo[key], dim=dim, iterations=steps)

    return Space(
        algorithm="wals",
        axes=search_axes(named, weighted),
        config_for=config_for,
        fit=fit_wals,
        step_cost=_wals_step_cost,
        default_steps=defaults.ITERATIONS,
        max_steps=w.iterations or max_iterations,
        steps_named=w.iterations is not None,
        warm_state=_warm_state,
    )


def searched_config(spec: TrainingSpec, params: dict[str, Any], data: Interactions, dim: int, steps: int) -> WALSConfig:
    """The WALS config of one candidate: the spec with the candidate's values filled in (λ from its shrinkage)."""
    chosen = _with_params(spec, params, data)
    return replace(wals_config(chosen, data), dim=dim, iterations=steps)


def _with_params(spec: TrainingSpec, params: dict[str, Any], data: Interactions) -> TrainingSpec:
    """The spec with a candidate's values written in, and every default wals_config would take resolved, so the
    model's spec records them; λ comes from the candidate's shrinkage on `data`."""
    w = spec.wals
    given = {"scheme": params.get("scheme"), "alpha": params.get("alpha")}
    confidence = w.confidence.model_copy(update={k: v for k, v in given.items() if v is not None})
    named: dict[str, Any] = {k: params[k] for k in ("unobserved_weight", "l2_scaling") if k in params}
    resolved = wals_config(spec.model_copy(update={"wals": w.model_copy(update={**named, "confidence": confidence})}))
    l2 = w.l2
    if "shrinkage" in params:
        r = resolved
        at_one = interaction_shrinkage(
            data, 1.0, r.unobserved_weight, r.l2_scaling, r.l2_exponent, r.confidence, r.alpha, r.eps
        )
        l2 = l2_for_shrinkage(params["shrinkage"], at_one)
    confidence = confidence.model_copy(update={"scheme": resolved.confidence, "alpha": resolved.alpha})
    block = w.model_copy(
        update={
            "confidence": confidence,
            "unobserved_weight": resolved.unobserved_weight,
            "l2_scaling": resolved.l2_scaling,
            "l2": l2,
        }
    )
    return spec.model_copy(update={"wals": block})


def chosen_spec(spec: TrainingSpec, outcome: Outcome, data: Interactions) -> TrainingSpec:
    """The spec with the search's choice written in: what the refit trains and the model records."""
    if spec.algorithm == "sgd":
        block = spec.sgd.model_copy(update={**outcome.params, "epochs": outcome.steps})
        return spec.model_copy(update={"sgd": block})
    chosen = _with_params(spec, outcome.params, data)
    wals = chosen.wals.model_copy(update={"iterations": outcome.steps})
    return chosen.model_copy(update={"wals": wals})
