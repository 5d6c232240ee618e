"""The search space of a tuning run, validated at the edge: which training-spec fields vary, and how.

Parameters are dotted paths into the training spec (`wals.l2`, `dim`, `sgd.negatives.strategy`).
A grid runs every combination of the listed values; a random search draws `trials` points, each
parameter from its list or from a range {low, high, log}. Every trial's spec is a complete
TrainingSpec, checked here, so a bad search is a 422 that names the parameter, not failed trials.
"""

from __future__ import annotations

import math
import random
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.spec import TrainingSpec

MAX_TRIALS = 64
DEFAULT_RANDOM_TRIALS = 10
# Trials must share their data and its split to be comparable; the index does not change the score.
FIXED = ("dataset_id", "evaluation", "index")

Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    """A numeric interval for random search; integer fields get rounded draws."""

    low: float = Field(description="Smallest value drawn (inclusive); > 0 when log.")
    high: float = Field(description="Largest value drawn (inclusive), >= low.")
    log: bool = Field(False, description="Draw uniformly in log space (for l2, learning rates).")

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


Values = Annotated[list[Scalar], Field(min_length=1, max_length=MAX_TRIALS)]


class SearchSpec(_Strict):
    """Which training-spec fields vary across trials, and how (API.md's "Training spec" names the fields)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"method": "grid", "params": {"wals.l2": [0.003, 0.01, 0.03], "wals.unobserved_weight": [1.0, 2.0]}},
                {
                    "method": "random",
                    "trials": 12,
                    "seed": 7,
                    "metric": "recall@20",
                    "params": {
                        "dim": [32, 64, 128],
                        "sgd.learning_rate": {"low": 0.001, "high": 0.1, "log": True},
                        "sgd.negatives.strategy": ["uniform", "in_batch"],
                    },
                },
            ]
        }
    )

    method: Literal["grid", "random"] = Field("grid", description="grid: every combination; random: `trials` draws.")
    trials: int | None = Field(
        None,
        ge=1,
        le=MAX_TRIALS,
        description=f"random: how many draws (default {DEFAULT_RANDOM_TRIALS}); grid: a seeded sample of "
        "this many combinations when the grid is larger.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the draws (not the trials' training seed).")
    metric: str | None = Field(
        None, description="recall@k or ndcg@k with k in the spec's evaluation.k; default ndcg@20 (or the largest k)."
    )
    params: dict[str, Values | Range] = Field(
        min_length=1, max_length=16, description='Dotted path → list of values, or {"low", "high", "log"} (random).'
    )


class SearchSpaceError(ValueError):
    """A search that cannot run; `field` names the offending part of the request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]
    spec: TrainingSpec


@dataclass(frozen=True)
class TrialPlan:
    metric: str
    trials: list[Trial]


def plan_trials(base: TrainingSpec, search: SearchSpec, max_trials: int = MAX_TRIALS) -> TrialPlan:
    """Every trial of a search, each with a validated spec; raises SearchSpaceError naming the culprit."""
    metric = _metric(base, search)
    kinds = {path: _leaf(path) for path in search.params}
    for path, space in search.params.items():
        _check_values(base, path, space, kinds[path])
    points = _grid(search, max_trials) if search.method == "grid" else _random(search, kinds)
    trials = []
    for number, params in enumerate(points):
        try:
            spec = with_params(base, params)
        except ValidationError as exc:
            raise SearchSpaceError("search.params", f"trial {number} {params}: {_message(exc)}") from None
        trials.append(Trial(number, params, spec))
    return TrialPlan(metric, trials)


def with_params(base: TrainingSpec, params: dict[str, Any]) -> TrainingSpec:
    """The base spec with each dotted-path parameter set (raises pydantic's ValidationError).

    The settings search is off: a tuning run's trials, and the final job of its best one, train what they
    name with the fixed defaults for the rest, so the final model is the one the leaderboard scored."""
    data = base.model_dump(mode="json")
    data["search"] = {"mode": "off"}
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):  # an optional block left out (early_stopping)
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return TrainingSpec.model_validate(data)


def _metric(base: TrainingSpec, search: SearchSpec) -> str:
    ks = base.evaluation.k
    if base.evaluation.split == "none":
        raise SearchSpaceError(
            "spec.evaluation.split", "tuning scores trials on a held-out split; 'none' holds nothing out"
        )
    if search.metric is None:
        return "ndcg@20" if 20 in ks else f"ndcg@{max(ks)}"
    m = re.fullmatch(r"(recall|ndcg)@(\d+)", search.metric)
    if not m or int(m.group(2)) not in ks:
        raise SearchSpaceError(
            "search.metric", f"{search.metric!r} is not computed: use recall@k or ndcg@k with k in evaluation.k {ks}"
        )
    return search.metric


def _leaf(path: str) -> type | None:
    """The scalar type (int, float, or None for others) of a tunable field; SearchSpaceError otherwise."""
    field = f"search.params.{path}"
    parts = path.split(".")
    if parts[0] in FIXED:
        raise SearchSpaceError(field, f"{parts[0]} is shared by every trial and cannot be tuned")
    model: type[BaseModel] | None = TrainingSpec
    annotation: Any = None
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if model is None:
            raise SearchSpaceError(field, f"unknown parameter {path!r}: {where} is a value, not a block")
        if part not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            raise SearchSpaceError(field, f"unknown parameter {path!r}: {where or 'the spec'} has {known}")
        annotation = model.model_fields[part].annotation
        model = _block(annotation)
    if model is not None:
        raise SearchSpaceError(field, f"{path!r} is a block; name one of its fields: {', '.join(model.model_fields)}")
    types_ = {a for a in _members(annotation) if a is not type(None)}
    if types_ <= {int}:
        return int
    if types_ <= {int, float}:
        return float
    return None


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _block(annotation: Any) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _check_values(base: TrainingSpec, path: str, space: list[Any] | Range, kind: type | None) -> None:
    """Each value alone must be valid for its field (combinations are checked per trial)."""
    field = f"search.params.{path}"
    if isinstance(space, Range):
        if kind is None:
            raise SearchSpaceError(field, "a range needs a numeric parameter; give a list of values")
        values: list[Any] = [_cast(space.low, kind), _cast(space.high, kind)]
    else:
        values = space
    for value in values:
        try:
            with_params(base, {path: value})
        except ValidationError as exc:
            here = [e for e in exc.errors() if ".".join(str(p) for p in e["loc"]) == path]
            if here:
                raise SearchSpaceError(field, f"value {value!r}: {here[0]['msg']}") from None


def _grid(search: SearchSpec, max_trials: int) -> list[dict[str, Any]]:
    for path, space in search.params.items():
        if isinstance(space, Range):
            raise SearchSpaceError(f"search.params.{path}", "a grid needs a list of values; ranges are for random")
    lists = [(path, space) for path, space in search.params.items() if isinstance(space, list)]
    n = math.prod(len(values) for _, values in lists)
    if search.trials is not None and search.trials < n:
        chosen = sorted(random.Random(search.seed).sample(range(n), search.trials))
    elif n > max_trials:
        raise SearchSpaceError(
            "search.params", f"the grid has {n} combinations, more than {max_trials}; set trials to sample some"
        )
    else:
        chosen = list(range(n))
    return [_combination(lists, i) for i in chosen]


def _combination(lists: list[tuple[str, list[Any]]], index: int) -> dict[str, Any]:
    """The index-th combination of the grid in row-major order (the last parameter varies fastest)."""
    point: dict[str, Any] = {}
    for path, values in reversed(lists):
        index, r = divmod(index, len(values))
        point[path] = values[r]
    return {path: point[path] for path, _ in lists}


def _random(search: SearchSpec, kinds: dict[str, type | None]) -> list[dict[str, Any]]:
    rng = random.Random(search.seed)
    points = []
    for _ in range(search.trials or DEFAULT_RANDOM_TRIALS):
        point: dict[str, Any] = {}
        for path, space in search.params.items():
            if isinstance(space, Range):
                if space.log:
                    x = math.exp(rng.uniform(math.log(space.low), math.log(space.high)))
                else:
                    x = rng.uniform(space.low, space.high)
                point[path] = _cast(x, kinds[path])
            else:
                point[path] = rng.choice(space)
        points.append(point)
    return points


def _cast(x: float, kind: type | None) -> Any:
    # Integer fields get integers; floats keep 4 significant digits so a leaderboard stays readable.
    return int(round(x)) if kind is int else float(f"{x:.4g}")


def _message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
