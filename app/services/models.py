"""Trained models and their aliases: list, fetch, delete, point an alias at a model."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Alias, Model, utcnow
from app.services.pagination import Page, paginate
from app.storage import ArtifactStore


def resolve_model(session: Session, model_id_or_alias: str) -> Model:
    """A model by id, or by the alias that points at it."""
    model = session.get(Model, model_id_or_alias)
    if model is None:
        alias = session.get(Alias, model_id_or_alias)
        if alias is not None:
            model = session.get(Model, alias.model_id)
    if model is None:
        raise NotFound(f"no model or alias {model_id_or_alias!r}")
    return model


def list_models(session: Session, limit: int, cursor: str | None) -> Page[Model]:
    return paginate(session, select(Model), Model.id, limit, cursor)


def delete_model(session: Session, store: ArtifactStore, model_id_or_alias: str) -> Model:
    """Delete a model, its aliases and its artifacts."""
    model = resolve_model(session, model_id_or_alias)
    session.execute(delete(Alias).where(Alias.model_id == model.id))
    session.delete(model)
    session.commit()
    store.delete(model.artifact_key)
    return model


def put_alias(session: Session, name: str, model_id: str) -> Alias:
    """Create or move an alias to a model (by id or by another alias)."""
    model = resolve_model(session, model_id)
    alias = session.get(Alias, name)
    if alias is None:
        alias = Alias(name=name, model_id=model.id)
        session.add(alias)
    else:
        alias.model_id = model.id
        alias.updated_at = utcnow()
    session.commit()
    return alias


def get_alias(session: Session, name: str) -> Alias:
    alias = session.get(Alias, name)
    if alias is None:
        raise NotFound(f"no alias {name!r}")
    return alias


def delete_alias(session: Session, name: str) -> None:
    session.delete(get_alias(session, name))
    session.commit()
