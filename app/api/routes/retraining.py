"""/v1/aliases/{name}/policy: retrain an alias on a schedule, behind a guardrail (docs/events.md)."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import LimitsDep, SessionDep, TenantDep
from app.api.params import AliasName
from app.api.problems import V1_ERRORS, problems
from app.api.retrain_schemas import PolicyOut
from app.services import retrain_policies
from app.services.retrain_policies import PolicyIn

router = APIRouter(prefix="/v1/aliases/{name}/policy", tags=["models"], responses={**V1_ERRORS, **problems(404)})


@router.put(
    "",
    response_model=PolicyOut,
    responses=problems(400, 413),
    summary="Retrain an alias on a schedule, behind a guardrail",
    description="Celery beat retrains the alias every `every_minutes` (when there is data its model has not "
    "seen) and/or once `after_events` events were posted to its model's dataset: pending events are folded into "
    "a new dataset version, and a job trains the alias model's own spec with the policy's `spec` changes, "
    "warm-started from that model. When the job ends the alias moves to the new model only if its held-out "
    "`metric` is at least the current model's × (1 − `tolerance`); otherwise it stays and the refusal is "
    "recorded. GET /v1/aliases/{name} shows the policy and the retrains. Replacing a policy keeps its schedule's "
    "state. 422 naming `spec.<field>` when the changes make no valid job.",
)
def put_policy(session: SessionDep, tenant: TenantDep, limits: LimitsDep, name: AliasName, body: PolicyIn) -> PolicyOut:
    return PolicyOut.model_validate(retrain_policies.put_policy(session, name, body, tenant=tenant, limits=limits))


@router.get("", response_model=PolicyOut, summary="An alias's retrain policy")
def get_policy(session: SessionDep, tenant: TenantDep, name: AliasName) -> PolicyOut:
    return PolicyOut.model_validate(retrain_policies.require_policy(session, name, tenant=tenant))


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop retraining an alias",
    description="The alias stays where it points; its retrain history stays too. A retrain already training is "
    "still decided when its job ends.",
)
def delete_policy(session: SessionDep, tenant: TenantDep, name: AliasName) -> None:
    retrain_policies.delete_policy(session, name, tenant=tenant)
