"""From a training spec to the core: each algorithm's config builder, fit function and resolved spec.

Imported by the worker only (it pulls in torch through the fit functions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from app.recsys.base import Callback, EmbeddingModel, Evaluator, Interrupt, StateCallback, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.sgd import fit_sgd
from app.recsys.sgd_config import SGDConfig, sgd_config_from_spec
from app.recsys.wals import WALSConfig, fit_wals
from app.recsys.wals_defaults import capped_l2, interaction_shrinkage
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

    def with_steps(self, steps: int) -> Plan:
        field = "iterations" if self.unit == "iteration" else "epochs"
        return replace(self, config=replace(self.config, **{field: steps}))

    def resolved(self) -> dict[str, Any]:
        """The algorithm block of the spec with every value Unfold chose filled in."""
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


# Defaults with frequency-scaled λ, chosen on validation splits (train → valid) of ml-1m-implicit and
# hetrec-lastfm at dim 64 (bench/defaults.py): within 2 % of the best grid point on both. An omitted λ is
# then lowered from the data where this one would over-shrink (wals_defaults.py); one λ 100 is the
# `"l2_scaling": "none"` default.
FREQUENCY_SCALED_L2 = 0.01
FREQUENCY_SCALED_W0 = 2.0


def wals_config(spec: TrainingSpec, data: Interactions | None = None) -> WALSConfig:
    """The core's WALS config: given fields win, omitted ones take Unfold's defaults for this data."""
    base = WALSConfig()
    w = spec.wals

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    scaled = w.l2_scaling == "frequency"
    unobserved_weight = pick(w.unobserved_weight, FREQUENCY_SCALED_W0 if scaled else base.unobserved_weight)
    alpha = pick(w.confidence.alpha, base.alpha)
    l2 = pick(w.l2, FREQUENCY_SCALED_L2 if scaled else base.l2)
    if w.l2 is None and data is not None and data.nnz:
        shrinkage = interaction_shrinkage(
            data, l2, unobserved_weight, w.l2_scaling, w.l2_exponent, w.confidence.scheme, alpha, w.confidence.eps
        )
        l2 = capped_l2(l2, shrinkage)
    return WALSConfig(
        dim=spec.dim,
        iterations=pick(w.iterations, base.iterations),
        l2=l2,
        l2_scaling=w.l2_scaling,
        l2_exponent=w.l2_exponent,
        unobserved_weight=unobserved_weight,
        confidence=w.confidence.scheme,
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
