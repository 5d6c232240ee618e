"""Dataset versions: the upload is version 1; each later version is the one before with the events since folded in.

A version keeps the row and column order of the one before it (new users and items are appended), so a model of
an earlier version lines up with a later one id by id. Folded events are raw rows: when the arrays are loaded,
repeated (user, item) pairs merge as at upload (weights summed, latest time kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import Dataset, DatasetVersion, Event
from app.recsys.interactions import Interactions
from app.services.datasets import ARRAYS_FILE, StoredDataset, get_dataset, load_arrays
from app.services.events import events_after, per_minute
from app.storage import ArtifactStore, publishing


@dataclass(frozen=True)
class VersionInfo:
    """One version of a dataset, the upload's (1) included."""

    dataset_id: str
    version: int
    artifact_key: str
    events_through: int  # events with a seq up to this are in this version (0: none, the upload)
    n_events: int
    n_users: int
    n_items: int
    n_interactions: int
    created_at: datetime


def version_key(dataset_id: str, version: int) -> str:
    """Where a version's arrays are published in the artifact store."""
    return f"dataset-versions/{dataset_id}/v{version}"


def _upload(dataset: Dataset) -> VersionInfo:
    return VersionInfo(
        dataset.id,
        1,
        dataset.artifact_key,
        0,
        0,
        dataset.n_users,
        dataset.n_items,
        dataset.n_interactions,
        dataset.created_at,
    )


def _info(row: DatasetVersion) -> VersionInfo:
    return VersionInfo(
        row.dataset_id,
        row.version,
        row.artifact_key,
        row.events_through,
        row.n_events,
        row.n_users,
        row.n_items,
        row.n_interactions,
        row.created_at,
    )


def list_versions(session: Session, dataset_id: str, *, tenant: str) -> list[VersionInfo]:
    """Every version of a dataset of `tenant`, newest first."""
    dataset = get_dataset(session, dataset_id, tenant=tenant)
    rows = session.scalars(
        select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id).order_by(DatasetVersion.version.desc())
    )
    return [*(_info(r) for r in rows), _upload(dataset)]


def get_version(session: Session, dataset: Dataset, version: int | None) -> VersionInfo:
    """A version of the dataset (None: the latest); NotFound naming the versions there are."""
    if version is None:
        latest = session.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id))
        version = latest or 1
    if version == 1:
        return _upload(dataset)
    row = session.get(DatasetVersion, (dataset.id, version))
    if row is None:
        latest = session.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id))
        raise NotFound(
            f"dataset_version: dataset {dataset.id!r} has no version {version} (versions 1..{latest or 1})",
            field="dataset_version",
        )
    return _info(row)


def load_version(store: ArtifactStore, version: VersionInfo) -> StoredDataset:
    """A version's interactions and id maps."""
    return load_arrays(store, version.artifact_key)


def create_version(session: Session, store: ArtifactStore, dataset_id: str, *, tenant: str) -> VersionInfo:
    """Fold the events since the latest version into a new one; 409 when there are none (or another fold won)."""
    dataset = get_dataset(session, dataset_id, tenant=tenant)
    base = get_version(session, dataset, None)
    events = events_after(session, dataset.id, base.events_through)
    if not events:
        raise Conflict(
            f"dataset {dataset_id!r} has no events since version {base.version}: post events "
            f"(POST /v1/datasets/{dataset_id}/events) before making a version",
            version=base.version,
        )
    number = base.version + 1
    key = version_key(dataset.id, number)
    with np.load(store.local_dir(base.artifact_key) / ARRAYS_FILE, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    user_ids, users = _extend(arrays["user_ids"], [e.user for e in events])
    item_ids, items = _extend(arrays["item_ids"], [e.item for e in events])
    grown = len(user_ids) > len(arrays["user_ids"]) or len(item_ids) > len(arrays["item_ids"])
    folded = {
        "users": np.concatenate([arrays["users"], users]).astype(arrays["users"].dtype),
        "items": np.concatenate([arrays["items"], items]).astype(arrays["items"].dtype),
        "weights": np.concatenate([arrays["weights"], np.array([e.weight for e in events], np.float64)]).astype(
            arrays["weights"].dtype
        ),
        "user_ids": user_ids,
        "item_ids": item_ids,
    }
    if "timestamps" in arrays:
        # An event without a time happened when it was stored.
        stamps = [e.timestamp if e.timestamp is not None else int(_utc(e.created_at).timestamp()) for e in events]
        folded["timestamps"] = np.concatenate([arrays["timestamps"], np.array(stamps, np.int64)])
    # Known groups describe the upload's users and items: kept while the version adds none.
    if not grown:
        folded.update({k: arrays[k] for k in ("user_groups", "item_groups", "item_group_names") if k in arrays})
    merged = Interactions.from_coo(
        folded["users"], folded["items"], folded["weights"], n_users=len(user_ids), n_items=len(item_ids)
    )
    with publishing(store, key) as staged:
        np.savez(staged / ARRAYS_FILE, allow_pickle=False, **folded)
    row = DatasetVersion(
        dataset_id=dataset.id,
        version=number,
        tenant=tenant,
        artifact_key=key,
        events_through=events[-1].seq,
        n_events=len(events),
        n_users=len(user_ids),
        n_items=len(item_ids),
        n_interactions=merged.nnz,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"dataset {dataset_id!r}: version {number} was made by another request meanwhile") from None
    return _info(row)


def _extend(ids: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The id map with the names it lacks appended (first appearance order), and each name's index in it."""
    index = {name: i for i, name in enumerate(ids.tolist())}
    added: list[str] = []
    codes = np.empty(len(names), dtype=np.int64)
    for j, name in enumerate(names):
        code = index.get(name)
        if code is None:
            code = index[name] = len(index)
            added.append(name)
        codes[j] = code
    if added:
        # Concatenated with their own width: numpy widens the result rather than cut a longer id.
        ids = np.concatenate([ids, np.array(added, dtype=str)])
    return ids, codes


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class EventStats:
    """A dataset's event stream at a glance (GET /v1/datasets/{id}/events)."""

    dataset_id: str
    total: int
    pending: int
    last_seq: int | None
    latest_version: int
    per_minute: list[int]


def event_stats(session: Session, dataset_id: str, *, tenant: str) -> EventStats:
    """Totals of a dataset's events, how many no version holds yet, and the last hour minute by minute."""
    dataset = get_dataset(session, dataset_id, tenant=tenant)
    latest = get_version(session, dataset, None)
    total, last = session.execute(
        select(func.count(Event.seq), func.max(Event.seq)).where(Event.dataset_id == dataset.id)
    ).one()
    pending = session.scalar(
        select(func.count(Event.seq)).where(Event.dataset_id == dataset.id, Event.seq > latest.events_through)
    )
    return EventStats(dataset.id, int(total), int(pending or 0), last, latest.version, per_minute(session, dataset.id))
