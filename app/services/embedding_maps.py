"""A model's 2-D embedding map: written beside the model's files at training time, read back for the API."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from app.errors import NotFound
from app.services.models import resolve_model
from app.storage import ArtifactStore

# The file in a model's artifact directory (see app.recsys.embedding_map for what it holds).
EMBEDDING_MAP_FILE = "embedding_map.json"


def read_embedding_map(
    session: Session, store: ArtifactStore, model_id_or_alias: str, *, tenant: str
) -> dict[str, Any]:
    """The stored map of a tenant's model (by id or alias); NotFound for models trained before maps were stored."""
    model = resolve_model(session, model_id_or_alias, tenant=tenant)
    try:
        path = store.local_dir(model.artifact_key) / EMBEDDING_MAP_FILE
        text = path.read_text()
    except FileNotFoundError:
        raise NotFound(
            f"model {model.id!r} has no embedding map: it was trained before maps were stored "
            "with models; train it again to get one",
            model_id=model.id,
        ) from None
    picture: dict[str, Any] = json.loads(text)
    return {"model_id": model.id, **picture}
