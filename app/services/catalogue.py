"""Item and user attributes of a dataset: upload (upsert or replace), describe, one row's values, delete.

A dataset's attributes of each kind ("items", "users") are one versioned table in the artifact store
(`catalogues/{dataset}/v{n}`, `catalogues/{dataset}/users/v{n}`), named by its `catalogues` row. Item
attributes feed filters, cold items and diversify; user attributes the segment popularity fallback.
An upload reads the file, merges it into the current table, publishes
the result as the next version and moves the row on, unless another upload moved it first (a 409:
nothing is lost, the client sends its file again). Models are not retrained: queries read the current
version (app.services.filters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.ingestion import IngestError, RowLimitExceeded
from app.ingestion.attributes import AttributeOptions, read_attributes
from app.limits import Limits, too_many_rows, upload_too_large
from app.models import Catalogue, Dataset, utcnow
from app.recsys.attributes import AttributeTable, load_table, save_table
from app.services.dataset_versions import get_version
from app.services.datasets import ARRAYS_FILE, get_dataset
from app.storage import ArtifactStore, publishing

CHUNK = 1 << 20
# How many of an upload's unknown ids the answer lists (all are counted).
UNKNOWN_SHOWN = 20
Mode = Literal["upsert", "replace"]
Kind = Literal["items", "users"]


@dataclass(frozen=True)
class UploadReport:
    """What an upload changed, next to the catalogue it produced."""

    catalogue: Catalogue
    rows: int
    new: int
    updated: int
    columns: list[str]
    n_unknown: int
    unknown_ids: list[str] = field(default_factory=list)


def catalogue_key(dataset_id: str, version: int, kind: Kind = "items") -> str:
    return f"catalogues/{dataset_id}/v{version}" if kind == "items" else f"catalogues/{dataset_id}/{kind}/v{version}"


def _stream_to_disk(src: BinaryIO, dest: Path, limits: Limits) -> int:
    """Copy in 1 MiB chunks; refuse once the upload passes the limit."""
    size = 0
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise upload_too_large(limits, size)
            out.write(chunk)
    return size


def dataset_ids(session: Session, store: ArtifactStore, dataset: Dataset, kind: Kind = "items") -> np.ndarray:
    """The item (or user) ids of the dataset's latest version (events may have added some since the
    upload); only that array of the version's file is read."""
    latest = get_version(session, dataset, None)
    with np.load(store.local_dir(latest.artifact_key) / ARRAYS_FILE, allow_pickle=False) as z:
        ids: np.ndarray = z["item_ids" if kind == "items" else "user_ids"]
        return ids


def load_version(store: ArtifactStore, artifact_key: str | None) -> AttributeTable:
    """The stored table of one attribute version (an empty table for None: nothing uploaded)."""
    if artifact_key is None:
        return AttributeTable(np.zeros(0, dtype="<U1"))
    return load_table(store.local_dir(artifact_key))


def current_table(store: ArtifactStore, catalogue: Catalogue | None) -> AttributeTable:
    """The stored table of a catalogue row (an empty one without a row)."""
    return load_version(store, catalogue.artifact_key if catalogue is not None else None)


def _schema(table: AttributeTable) -> dict[str, object]:
    return {"columns": [{"name": name, "kind": kind} for name, kind in table.schema.items()]}


def upload_attributes(
    session: Session,
    store: ArtifactStore,
    dataset_id: str,
    upload: BinaryIO,
    *,
    filename: str | None,
    options: AttributeOptions,
    mode: Mode,
    tenant: str,
    limits: Limits,
    kind: Kind = "items",
) -> UploadReport:
    """Read an attribute file and write it over the dataset's current attributes of that kind (or replace them)."""
    dataset = get_dataset(session, dataset_id, tenant=tenant)
    row = session.get(Catalogue, (dataset_id, kind))
    version = row.version if row is not None else 0
    scratch = store.staging_dir()
    try:
        raw = scratch / "upload.raw"
        _stream_to_disk(upload, raw, limits)
        old = current_table(store, row) if mode == "upsert" else AttributeTable(np.zeros(0, dtype="<U1"))
        try:
            update_table = read_attributes(
                raw, options, filename=filename, schema=old.schema, max_rows=limits.max_upload_rows
            )
        except RowLimitExceeded as exc:
            raise too_many_rows(limits, exc.rows) from exc
        except IngestError as exc:
            raise InvalidInput(str(exc), line=exc.line, column=exc.column) from exc
    finally:
        store.discard(scratch)
    known = dataset_ids(session, store, dataset, kind)
    in_dataset = np.isin(update_table.ids, known)
    if update_table.ids.shape[0] and not in_dataset.any():
        raise InvalidInput(
            f"none of the {update_table.ids.shape[0]} ids is {_noun(kind)} of dataset {dataset_id!r} (e.g. "
            f"{str(update_table.ids[0])!r}); is the id column right? Name it with id_column",
            field="id_column",
        )
    existed = old.positions(update_table.ids) >= 0
    merged = old.upsert(update_table)
    key = catalogue_key(dataset_id, version + 1, kind)
    with publishing(store, key) as staged:
        save_table(staged, merged)
    n_unknown = int((~np.isin(merged.ids, known)).sum())
    values = {
        "version": version + 1,
        "attributes": _schema(merged),
        "n_rows": int(merged.ids.shape[0]),
        "n_unknown": n_unknown,
        "artifact_key": key,
        "updated_at": utcnow(),
    }
    try:
        if row is None:
            row = Catalogue(dataset_id=dataset_id, kind=kind, tenant=tenant, **values)
            session.add(row)
            session.commit()
        else:
            moved = session.execute(
                update(Catalogue)
                .where(Catalogue.dataset_id == dataset_id, Catalogue.kind == kind, Catalogue.version == version)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(
                    f"the {kind[:-1]} attributes of dataset {dataset_id!r} changed during this upload (another "
                    "upload); send the file again",
                    dataset_id=dataset_id,
                )
            session.commit()
            session.refresh(row)
    except (Conflict, IntegrityError) as exc:
        session.rollback()
        store.delete(key)
        if isinstance(exc, Conflict):
            raise
        raise Conflict(
            f"another upload created the {kind[:-1]} attributes of dataset {dataset_id!r} first; send again"
        ) from exc
    if version:
        store.delete(catalogue_key(dataset_id, version, kind))
    unknown = update_table.ids[~in_dataset]
    return UploadReport(
        catalogue=row,
        rows=int(update_table.ids.shape[0]),
        new=int((~existed).sum()),
        updated=int(existed.sum()),
        columns=list(update_table.columns),
        n_unknown=int(unknown.shape[0]),
        unknown_ids=[str(u) for u in unknown[:UNKNOWN_SHOWN]],
    )


def _noun(kind: Kind) -> str:
    return "an item" if kind == "items" else "a user"


def get_catalogue(session: Session, dataset_id: str, *, tenant: str, kind: Kind = "items") -> Catalogue:
    """A dataset's attributes row of that kind; NotFound when the dataset (of this tenant) has none."""
    get_dataset(session, dataset_id, tenant=tenant)
    row = session.get(Catalogue, (dataset_id, kind))
    if row is None:
        raise NotFound(
            f"dataset {dataset_id!r} has no {kind[:-1]} attributes yet; upload them with "
            f"POST /v1/datasets/{dataset_id}/{kind}"
        )
    return row


def row_attributes(
    session: Session, store: ArtifactStore, dataset_id: str, row_id: str, *, tenant: str, kind: Kind = "items"
) -> dict[str, Any]:
    """One item's (or user's) attribute values (absent ones left out)."""
    row = get_catalogue(session, dataset_id, tenant=tenant, kind=kind)
    values = current_table(store, row).row(row_id)
    if values is None:
        raise NotFound(f"{kind[:-1]} {row_id!r} has no attributes in dataset {dataset_id!r}")
    return values


def delete_catalogue(
    session: Session, store: ArtifactStore, dataset_id: str, *, tenant: str, kind: Kind = "items"
) -> None:
    """Remove a dataset's attributes of that kind (without item attributes, filters on its models know no
    attribute but `id`; without user attributes, segment popularity falls back to global popularity)."""
    row = get_catalogue(session, dataset_id, tenant=tenant, kind=kind)
    key = row.artifact_key
    session.delete(row)
    session.commit()
    store.delete(key)
