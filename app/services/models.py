"""Trained models and their aliases: list, fetch, delete, point an alias at a model.

Everything is scoped to a tenant: another tenant's model or alias is not found, exactly like a
missing one, and alias names are the tenant's own (two tenants may both have a "prod").
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.errors import NotFound
from app.job_status import ACTIVE
from app.models import Alias, Job, Model, utcnow
from app.services.pagination import Page, paginate
from app.services.serving import LoadedModel, ModelCache
from app.storage import ArtifactStore


def model_key(model_id: str) -> str:
    """Where a model's artifact is published in the artifact store."""
    return f"models/{model_id}"


def resolve_model(session: Session, model_id_or_alias: str, *, tenant: str) -> Model:
    """A model of `tenant` by id, or by the tenant's alias that points at it."""
    model = session.get(Model, model_id_or_alias)
    if model is None or model.tenant != tenant:
        model = None
        alias = session.get(Alias, (tenant, model_id_or_alias))
        if alias is not None:
            model = session.get(Model, alias.model_id)
    if model is None or model.tenant != tenant:
        raise NotFound(_missing(session, model_id_or_alias, tenant))
    return model


def loaded_model(
    sessions: sessionmaker[Session], cache: ModelCache, model_id_or_alias: str, *, tenant: str
) -> LoadedModel:
    """A model of `tenant`, loaded for queries: from the cache, else looked up (id or alias) and loaded."""
    with sessions() as session:

        def lookup() -> tuple[str, str]:
            row = resolve_model(session, model_id_or_alias, tenant=tenant)
            return row.id, row.artifact_key

        return cache.resolve(tenant, model_id_or_alias, lookup)


def _missing(session: Session, model_id: str, tenant: str) -> str:
    """Why there is no such model: its job (a model's id is derived from its job's) may still be training."""
    if model_id.startswith("mdl_"):
        job = session.get(Job, "job_" + model_id.removeprefix("mdl_"))
        if job is not None and job.tenant == tenant and job.status in ACTIVE:
            return (
                f"no model {model_id!r} yet: its job {job.id!r} is still {job.status} "
                f"(GET /v1/jobs/{job.id} follows its progress)"
            )
    return f"no model or alias {model_id!r}"


def list_models(session: Session, limit: int, cursor: str | None, *, tenant: str) -> Page[Model]:
    return paginate(session, select(Model).where(Model.tenant == tenant), Model.id, limit, cursor)


def delete_model(session: Session, store: ArtifactStore, model_id_or_alias: str, *, tenant: str) -> Model:
    """Delete a model, its aliases and its artifacts."""
    model = resolve_model(session, model_id_or_alias, tenant=tenant)
    session.execute(delete(Alias).where(Alias.model_id == model.id))
    session.delete(model)
    session.commit()
    store.delete(model.artifact_key)
    return model


def put_alias(session: Session, name: str, model_id: str, *, tenant: str) -> Alias:
    """Create or move an alias of `tenant` to one of its models (by id or by another alias)."""
    model = resolve_model(session, model_id, tenant=tenant)
    alias = session.get(Alias, (tenant, name))
    if alias is None:
        alias = Alias(tenant=tenant, name=name, model_id=model.id)
        session.add(alias)
    else:
        alias.model_id = model.id
        alias.updated_at = utcnow()
    session.commit()
    return alias


def get_alias(session: Session, name: str, *, tenant: str) -> Alias:
    alias = session.get(Alias, (tenant, name))
    if alias is None:
        raise NotFound(f"no alias {name!r}")
    return alias


def delete_alias(session: Session, name: str, *, tenant: str) -> None:
    session.delete(get_alias(session, name, tenant=tenant))
    session.commit()
