"""An alias's retrain policy: when to retrain (every N minutes, after M new events), how (the alias model's own
spec with the policy's changes, warm-started from it), and the guardrail that decides whether the alias moves.

The scheduler and the guardrail that act on a policy are in retraining.py; this module holds what a client sets
and reads back (the policy, the alias's retrain history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.limits import Limits, check_spec
from app.models import Alias, Model, Retrain, RetrainPolicy, utcnow
from app.services.models import get_alias
from app.services.warm_start import merged
from app.spec import MAX_K, TrainingSpec

# The policy decides these: the dataset and version are the alias model's latest, the warm start its model.
POLICY_OWNS = ("dataset_id", "dataset_version", "warm_start")
HISTORY = 20  # retrains an alias shows, newest first


class PolicyIn(BaseModel):
    """What a client sets: at least one trigger, the guardrail, and changes to the alias model's spec."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"after_events": 1000, "every_minutes": 60, "tolerance": 0.01, "spec": {"wals": {"iterations": 3}}},
                {"every_minutes": 1440, "metric": "ndcg@10", "tolerance": 0, "warm_start": False},
            ]
        },
    )

    every_minutes: int | None = Field(
        None,
        ge=1,
        le=525_600,
        description="Retrain this many minutes after the last retrain (or after the policy was set), when there "
        "are interactions the alias's model has not trained on.",
    )
    after_events: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description="Retrain once this many events were posted to the model's dataset since the last retrain "
        "(or since the model's dataset version).",
    )
    metric: str = Field(
        "recall@20",
        pattern=r"^(recall|ndcg)@[0-9]{1,7}$",
        description="The held-out metric the guardrail compares (recall@k or ndcg@k; the retrain computes it).",
    )
    tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest relative drop of `metric` the alias accepts: it moves when new ≥ current × "
        "(1 − tolerance). 0: never worse.",
    )
    warm_start: bool = Field(
        True,
        description="Start each retrain from the alias model's factors (WALS, same dim); otherwise, or when the "
        "spec changes the dim or algorithm, from scratch.",
    )
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="Changes to the alias model's own spec for the retrain, as in POST /v1/jobs (e.g. "
        '`{"wals": {"iterations": 3}}`); dataset_id, dataset_version and warm_start are the policy\'s.',
    )

    @model_validator(mode="after")
    def _check(self) -> PolicyIn:
        if self.every_minutes is None and self.after_events is None:
            raise ValueError("give every_minutes, after_events or both: a policy without a trigger never retrains")
        if not 1 <= metric_k(self.metric) <= MAX_K:
            raise ValueError(f"metric: k must be within 1..{MAX_K}")
        owned = sorted(set(self.spec) & set(POLICY_OWNS))
        if owned:
            raise ValueError(f"spec: {', '.join(owned)} are set by the policy (the alias's model and its dataset)")
        return self


def metric_k(metric: str) -> int:
    return int(metric.split("@", 1)[1])


def retrain_spec(model: Model, policy: RetrainPolicy | PolicyIn) -> TrainingSpec:
    """The spec a retrain of `model` runs: the model's own with the policy's changes, on its dataset's latest
    version, holding out a split at the metric's k (the guardrail compares held-out metrics), warm-started from
    the model when the policy asks and the algorithm and dim allow. ValidationError for changes that make no spec."""
    changes = dict(policy.spec)
    base = {k: v for k, v in model.spec.items() if k not in POLICY_OWNS}
    algorithm = changes.get("algorithm", model.algorithm)
    if algorithm != model.algorithm:
        base.pop(model.algorithm, None)  # the other algorithm's settings mean nothing here
    data = merged(base, changes)
    data["dataset_id"] = model.dataset_id
    evaluation = data.get("evaluation") or {}
    if isinstance(evaluation, dict):  # anything else is the spec's own 422 below
        evaluation = dict(evaluation)
        if evaluation.get("split", "random") == "none":
            evaluation["split"] = "random"
        ks = evaluation.get("k") or [10, 20]
        if isinstance(ks, list) and metric_k(policy.metric) not in ks:
            evaluation["k"] = [*ks, metric_k(policy.metric)]
        data["evaluation"] = evaluation
    distributed = data.get("distributed")
    workers = distributed.get("workers", 1) if isinstance(distributed, dict) else 1
    if (
        policy.warm_start
        and algorithm == model.algorithm == "wals"
        and data.get("dim", model.dim) == model.dim
        and workers == 1
    ):
        data["warm_start"] = model.id
        if "search" not in changes:  # a warm start keeps the model's settings: no search (the model's may be auto)
            data.pop("search", None)
    return TrainingSpec.model_validate(data)


def put_policy(session: Session, name: str, body: PolicyIn, *, tenant: str, limits: Limits) -> RetrainPolicy:
    """Set (or replace) an alias's policy; 404 for no such alias, 422 when its spec changes make no valid job.

    Replacing a policy keeps when the last retrain ran and which events it saw.
    """
    alias = get_alias(session, name, tenant=tenant)
    model = session.get(Model, alias.model_id)
    if model is None:
        raise NotFound(f"no alias {name!r}")
    try:
        spec = retrain_spec(model, body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(["spec", *(str(p) for p in first["loc"])])
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None
    check_spec(spec, limits, prefix="spec.")
    policy = session.get(RetrainPolicy, (tenant, name))
    values = body.model_dump()
    if policy is None:
        policy = RetrainPolicy(tenant=tenant, alias=name, **values)
        session.add(policy)
    else:
        for key, value in values.items():
            setattr(policy, key, value)
        policy.updated_at = utcnow()
    session.commit()
    return policy


def get_policy(session: Session, name: str, *, tenant: str) -> RetrainPolicy | None:
    """The alias's policy, None when it has none (404 when there is no such alias)."""
    get_alias(session, name, tenant=tenant)
    return session.get(RetrainPolicy, (tenant, name))


def require_policy(session: Session, name: str, *, tenant: str) -> RetrainPolicy:
    """The alias's policy; 404 when there is no such alias or it has no policy."""
    policy = get_policy(session, name, tenant=tenant)
    if policy is None:
        raise NotFound(f"alias {name!r} has no retrain policy (PUT /v1/aliases/{name}/policy sets one)")
    return policy


def delete_policy(session: Session, name: str, *, tenant: str) -> None:
    """Stop retraining an alias (its history stays); 404 when it has no policy."""
    require_policy(session, name, tenant=tenant)
    session.execute(delete(RetrainPolicy).where(RetrainPolicy.tenant == tenant, RetrainPolicy.alias == name))
    session.commit()


def history(session: Session, alias: Alias, limit: int = HISTORY) -> list[Retrain]:
    """The alias's latest retrains, newest first."""
    query = (
        select(Retrain)
        .where(Retrain.tenant == alias.tenant, Retrain.alias == alias.name)
        .order_by(Retrain.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class AliasView:
    """An alias with its policy and latest retrains (GET /v1/aliases/{name})."""

    name: str
    model_id: str
    updated_at: datetime
    policy: RetrainPolicy | None
    retrains: list[Retrain]


def describe_alias(session: Session, name: str, *, tenant: str) -> AliasView:
    """Where an alias points, its retrain policy and its latest retrains; 404 for no such alias."""
    alias = get_alias(session, name, tenant=tenant)
    policy = session.get(RetrainPolicy, (tenant, name))
    return AliasView(alias.name, alias.model_id, alias.updated_at, policy, history(session, alias))


MAX_LISTED = 100  # aliases GET /v1/aliases lists (a tenant's few names for its models)


def list_aliases(session: Session, *, tenant: str) -> list[AliasView]:
    """The tenant's aliases by name (at most MAX_LISTED), each with its policy and latest retrains."""
    aliases = session.scalars(select(Alias).where(Alias.tenant == tenant).order_by(Alias.name).limit(MAX_LISTED))
    policies = {p.alias: p for p in session.scalars(select(RetrainPolicy).where(RetrainPolicy.tenant == tenant))}
    return [AliasView(a.name, a.model_id, a.updated_at, policies.get(a.name), history(session, a)) for a in aliases]
