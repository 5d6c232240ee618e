"""Bodies of an alias's retrain policy and history (docs/events.md, "Scheduled retraining"), with their examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api import examples
from app.api.schemas import AliasOut, UtcDatetime

POLICY: dict[str, Any] = {
    "alias": "prod",
    "every_minutes": 60,
    "after_events": 1000,
    "metric": "recall@20",
    "tolerance": 0.01,
    "warm_start": True,
    "spec": {"wals": {"iterations": 3}},
    "events_through": 1150,
    "last_retrain_at": "2026-12-07T09:00:00Z",
    "created_at": "2026-12-07T08:00:00Z",
    "updated_at": "2026-12-07T08:00:00Z",
}
NEW_MODEL_ID = "mdl_0193a8f1c2d07c41e2d9b5"
MOVED: dict[str, Any] = {
    "id": "rt_0193a8f1c2d0a1b2c3d4e5",
    "trigger": "events",
    "outcome": "moved",
    "reason": "recall@20 0.2594 against 0.2580 (floor 0.2554)",
    "job_id": "job_0193a8f1c2d07c41e2d9b5",
    "dataset_id": examples.DATASET_ID,
    "dataset_version": 2,
    "current_model_id": examples.MODEL_ID,
    "new_model_id": NEW_MODEL_ID,
    "metric": "recall@20",
    "tolerance": 0.01,
    "current_value": 0.258,
    "new_value": 0.2594,
    "created_at": "2026-12-07T09:00:00Z",
    "decided_at": "2026-12-07T09:00:41Z",
}
REFUSED: dict[str, Any] = {
    **MOVED,
    "id": "rt_0193a9d5e6f0a1b2c3d4e5",
    "trigger": "schedule",
    "outcome": "refused",
    "reason": "recall@20 0.0412 is 84.1% below the current model's 0.2594, more than the tolerance of 1.0% "
    "(floor 0.2568)",
    "job_id": "job_0193a9d5e6f07c41e2d9b5",
    "dataset_version": 3,
    "current_model_id": NEW_MODEL_ID,
    "new_model_id": "mdl_0193a9d5e6f07c41e2d9b5",
    "current_value": 0.2594,
    "new_value": 0.0412,
    "created_at": "2026-12-07T10:00:00Z",
    "decided_at": "2026-12-07T10:00:38Z",
}


class PolicyOut(BaseModel):
    """An alias's retrain policy, and where its schedule stands."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [POLICY]})

    alias: str = Field(description="The alias the policy retrains.")
    every_minutes: int | None = Field(description="Retrain this many minutes after the last retrain; null: never.")
    after_events: int | None = Field(description="Retrain once this many events were posted since; null: never.")
    metric: str = Field(description="The held-out metric the guardrail compares.")
    tolerance: float = Field(description="Largest relative drop of the metric that still moves the alias.")
    warm_start: bool = Field(description="Whether a retrain starts from the alias model's factors.")
    spec: dict[str, Any] = Field(description="The policy's changes to the alias model's spec.")
    events_through: int | None = Field(
        description="Events up to this sequence number were seen by the last retrain; null: none has run yet "
        "(the model's dataset version counts)."
    )
    last_retrain_at: UtcDatetime | None = Field(description="When the last retrain started; null: none yet.")
    created_at: UtcDatetime = Field(description="When the policy was first set.")
    updated_at: UtcDatetime = Field(description="When the policy or its schedule last changed.")


class RetrainOut(BaseModel):
    """One retrain of an alias: the job, and whether the guardrail moved the alias to its model."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [MOVED, REFUSED]})

    id: str = Field(description="The retrain's id (sorts by time).")
    trigger: str = Field(description="events (after_events reached) or schedule (every_minutes passed).")
    outcome: str = Field(
        description="training (its job runs), moved (the alias points at the new model), refused (the guardrail "
        "kept the alias where it was) or failed (no new model: the job failed or could not be submitted)."
    )
    reason: str | None = Field(description="Why it moved, was refused or failed, in numbers; null while training.")
    job_id: str | None = Field(description="The training job (GET /v1/jobs/{id}); null if it was never submitted.")
    dataset_id: str = Field(description="The dataset retrained on.")
    dataset_version: int | None = Field(description="Its version the job trained on (pending events folded in).")
    current_model_id: str = Field(description="The model the alias pointed at, which the new one was compared with.")
    new_model_id: str | None = Field(description="The retrained model; it exists whether or not the alias moved.")
    metric: str = Field(description="The held-out metric compared.")
    tolerance: float = Field(description="The relative drop allowed.")
    current_value: float | None = Field(description="The current model's held-out metric.")
    new_value: float | None = Field(description="The new model's held-out metric.")
    created_at: UtcDatetime = Field(description="When the retrain started.")
    decided_at: UtcDatetime | None = Field(description="When the guardrail decided; null while training.")


class AliasDetail(AliasOut):
    """An alias with its retrain policy and its latest retrains."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{**examples.ALIAS, "model_id": NEW_MODEL_ID, "policy": POLICY, "retrains": [REFUSED, MOVED]}]
        },  # fmt: skip
    )

    policy: PolicyOut | None = Field(description="The retrain policy (PUT /v1/aliases/{name}/policy); null: none.")
    retrains: list[RetrainOut] = Field(description="The latest 20 retrains, newest first.")


class AliasList(BaseModel):
    """The tenant's aliases by name, each with its policy and latest retrains."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [AliasDetail.model_config["json_schema_extra"]["examples"][0]]}]  # type: ignore[index]
        }
    )

    items: list[AliasDetail] = Field(description="At most 100 aliases, by name.")
