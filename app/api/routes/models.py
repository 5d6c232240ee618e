"""/v1/models and /v1/aliases: trained models and the names that point at them."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import CacheDep, SessionDep, StoreDep, TenantDep
from app.api.params import AliasName, Cursor, Limit, ModelId
from app.api.problems import V1_ERRORS, problems
from app.api.retrain_schemas import AliasDetail, AliasList
from app.api.schemas import AliasIn, AliasOut, EmbeddingMapOut, ModelOut, Page
from app.services import embedding_maps, models, retrain_policies

router = APIRouter(tags=["models"], responses=V1_ERRORS)


@router.get("/v1/models", response_model=Page[ModelOut], summary="List models, newest first")
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ModelOut]:
    page = models.list_models(session, limit, cursor, tenant=tenant)
    return Page[ModelOut](items=[ModelOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor)


@router.get(
    "/v1/models/{model_id}", response_model=ModelOut, responses=problems(404), summary="One model, by id or alias"
)
def get_model(session: SessionDep, tenant: TenantDep, model_id: ModelId) -> ModelOut:
    return ModelOut.model_validate(models.resolve_model(session, model_id, tenant=tenant))


@router.get(
    "/v1/models/{model_id}/embedding-map",
    response_model=EmbeddingMapOut,
    responses=problems(404),
    summary="A 2-D map of the model's item embeddings",
    description="PCA of at most 2,000 of the model's item factors (a seeded sample), computed when the model "
    "was trained, with one colour per point: the item's group when the dataset has an item group column "
    "(as planted data do), else its popularity bucket. `group_separation` says how far apart the groups lie "
    "(folding shows as groups on top of each other). 404 for models trained before maps were stored.",
)
def get_embedding_map(session: SessionDep, store: StoreDep, tenant: TenantDep, model_id: ModelId) -> EmbeddingMapOut:
    return EmbeddingMapOut.model_validate(embedding_maps.read_embedding_map(session, store, model_id, tenant=tenant))


@router.delete(
    "/v1/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404), summary="Delete a model"
)
def delete_model(session: SessionDep, store: StoreDep, cache: CacheDep, tenant: TenantDep, model_id: ModelId) -> None:
    deleted = models.delete_model(session, store, model_id, tenant=tenant)
    cache.evict(deleted.id)


@router.put(
    "/v1/aliases/{name}",
    response_model=AliasOut,
    responses=problems(400, 404, 413),
    summary="Point an alias at a model",
)
def put_alias(session: SessionDep, cache: CacheDep, tenant: TenantDep, name: AliasName, body: AliasIn) -> AliasOut:
    alias = models.put_alias(session, name, body.model_id, tenant=tenant)
    cache.forget_name(tenant, name)
    return AliasOut.model_validate(alias)


@router.get(
    "/v1/aliases",
    response_model=AliasList,
    summary="List aliases, with their retrain policies and histories",
    description="Every alias of the tenant by name (at most 100): where it points, its retrain policy and its "
    "latest 20 retrains, as GET /v1/aliases/{name} shows one.",
)
def list_aliases(session: SessionDep, tenant: TenantDep) -> AliasList:
    views = retrain_policies.list_aliases(session, tenant=tenant)
    return AliasList(items=[AliasDetail.model_validate(v) for v in views])


@router.get(
    "/v1/aliases/{name}",
    response_model=AliasDetail,
    responses=problems(404),
    summary="Where an alias points, its retrain policy and history",
    description="The model the alias names, its retrain policy (null without one) and its latest 20 retrains, "
    "newest first: each with its job, the new model, both models' held-out metric and whether the alias moved or "
    "the guardrail refused, and why.",
)
def get_alias(session: SessionDep, tenant: TenantDep, name: AliasName) -> AliasDetail:
    return AliasDetail.model_validate(retrain_policies.describe_alias(session, name, tenant=tenant))


@router.delete(
    "/v1/aliases/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404), summary="Remove an alias"
)
def delete_alias(session: SessionDep, cache: CacheDep, tenant: TenantDep, name: AliasName) -> None:
    models.delete_alias(session, name, tenant=tenant)
    cache.forget_name(tenant, name)
