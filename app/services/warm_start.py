"""Warm-started training, the API's part: a spec naming `warm_start` is completed from that model.

Its id replaces an alias (the job records which model it started from), and its dim and WALS settings fill in
those the spec leaves out, with no search: the point is to carry on from where that model stopped. The worker's
part (warm_fitting.py) starts the fit from the model's factors.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.services.models import resolve_model
from app.spec import TrainingSpec


def complete_spec(session: Session, spec: TrainingSpec, *, tenant: str) -> TrainingSpec:
    """The spec with its warm-start model resolved to an id of `tenant` and its omitted settings taken from it."""
    if spec.warm_start is None:
        return spec
    try:
        source = resolve_model(session, spec.warm_start, tenant=tenant)
    except NotFound:
        raise NotFound(f"warm_start: no model or alias {spec.warm_start!r}", field="warm_start") from None
    if source.algorithm != "wals":
        raise InvalidInput(
            f"warm_start: model {source.id!r} was trained with {source.algorithm}; only a WALS model can start a "
            "WALS fit",
            field="warm_start",
        )
    if "dim" in spec.model_fields_set and spec.dim != source.dim:
        raise InvalidInput(
            f"warm_start: model {source.id!r} has dim {source.dim}, this spec asks for {spec.dim}; leave dim out "
            "or make them equal",
            field="dim",
        )
    data = spec.model_dump(mode="json")
    data.update(
        warm_start=source.id,
        dim=source.dim,
        wals=merged(source.spec.get("wals") or {}, spec.wals.model_dump(mode="json", exclude_unset=True)),
        search={**data["search"], "mode": "off"},
    )
    return TrainingSpec.model_validate(data)


def merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`base` with the values of `given` in place of its own, nested blocks merged the same way."""
    out = dict(base)
    for key, value in given.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
