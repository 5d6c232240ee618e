"""Dataset use cases: ingest an upload into the artifact store, list, fetch, delete."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.ingestion import IngestError, ParseOptions, RowLimitExceeded, parse_file
from app.job_status import ACTIVE
from app.limits import Limits, too_many_rows, upload_too_large
from app.models import Catalogue, Dataset, DatasetVersion, Job, new_id
from app.recsys.interactions import Interactions
from app.services.pagination import Page, paginate
from app.storage import ArtifactStore, publishing

CHUNK = 1 << 20
ARRAYS_FILE = "interactions.npz"


@dataclass(frozen=True)
class StoredDataset:
    """A dataset loaded back from the store: the matrix and the external ids of its rows/columns."""

    interactions: Interactions
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_groups: np.ndarray | None = None  # planted/known group per user, when the upload had one
    item_groups: np.ndarray | None = None
    item_group_names: np.ndarray | None = None  # label of each item group code, as written in the file


def _stream_to_disk(src: BinaryIO, dest: Path, limits: Limits) -> tuple[str, int]:
    """Copy in 1 MiB chunks, hashing as we go; refuse once the limit is passed."""
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise upload_too_large(limits, size)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def create_dataset(
    session: Session,
    store: ArtifactStore,
    upload: BinaryIO,
    *,
    filename: str | None,
    name: str | None,
    options: ParseOptions,
    tenant: str,
    limits: Limits,
) -> Dataset:
    """Stream an upload to disk, parse it, store its arrays and record the dataset."""
    dataset_id = new_id("ds")
    key = f"datasets/{dataset_id}"
    with publishing(store, key) as staged:
        raw = staged / "upload.raw"
        checksum, size = _stream_to_disk(upload, raw, limits)
        try:
            parsed = parse_file(raw, options, filename=filename, max_rows=limits.max_upload_rows)
        except RowLimitExceeded as exc:
            raise too_many_rows(limits, exc.rows) from exc
        except IngestError as exc:
            raise InvalidInput(str(exc), line=exc.line, column=exc.column) from exc
        raw.unlink()
        arrays = {
            "users": parsed.users,
            "items": parsed.items,
            "weights": parsed.weights,
            "user_ids": parsed.user_ids,
            "item_ids": parsed.item_ids,
        }
        optional = {
            "timestamps": parsed.timestamps,
            "user_groups": parsed.user_groups,
            "item_groups": parsed.item_groups,
            "item_group_names": parsed.item_group_names,
        }
        arrays.update({name: values for name, values in optional.items() if values is not None})
        # allow_pickle=False: an object array (ids that were not strings) fails here instead of pickling.
        np.savez(staged / ARRAYS_FILE, allow_pickle=False, **arrays)
        stats = parsed.stats
        (staged / "dataset.json").write_text(json.dumps({"id": dataset_id, "stats": stats}, indent=1))
    n_users, n_items, nnz = len(parsed.user_ids), len(parsed.item_ids), len(parsed.users)
    dataset = Dataset(
        id=dataset_id,
        tenant=tenant,
        name=name or filename or dataset_id,
        status="ready",
        format=str(stats.get("format", options.format)),
        n_users=n_users,
        n_items=n_items,
        n_interactions=nnz,
        density=nnz / (n_users * n_items),
        checksum=checksum,
        size_bytes=size,
        stats=stats,
        artifact_key=key,
    )
    session.add(dataset)
    try:
        session.commit()
    except BaseException:
        store.delete(key)
        raise
    return dataset


def load_dataset(store: ArtifactStore, dataset: Dataset) -> StoredDataset:
    """Read a dataset's arrays back (no pickle) as an Interactions matrix plus id maps."""
    return load_arrays(store, dataset.artifact_key)


def load_arrays(store: ArtifactStore, key: str) -> StoredDataset:
    """Read the arrays stored under `key` (an upload's, or a later version's: dataset_versions.py)."""
    with np.load(store.local_dir(key) / ARRAYS_FILE, allow_pickle=False) as z:
        interactions = Interactions.from_coo(
            z["users"],
            z["items"],
            z["weights"],
            z["timestamps"] if "timestamps" in z.files else None,
            n_users=len(z["user_ids"]),
            n_items=len(z["item_ids"]),
        )
        return StoredDataset(
            interactions,
            z["user_ids"],
            z["item_ids"],
            z["user_groups"] if "user_groups" in z.files else None,
            z["item_groups"] if "item_groups" in z.files else None,
            z["item_group_names"] if "item_group_names" in z.files else None,
        )


def get_dataset(session: Session, dataset_id: str, *, tenant: str) -> Dataset:
    """A dataset of `tenant`; another tenant's is not found, exactly like a missing one."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant != tenant:
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset


def list_datasets(session: Session, limit: int, cursor: str | None, *, tenant: str) -> Page[Dataset]:
    return paginate(session, select(Dataset).where(Dataset.tenant == tenant), Dataset.id, limit, cursor)


def delete_dataset(session: Session, store: ArtifactStore, dataset_id: str, *, tenant: str) -> None:
    """Delete a dataset unless a queued or running job still needs it."""
    dataset = get_dataset(session, dataset_id, tenant=tenant)
    busy = session.scalar(select(Job.id).where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE)).limit(1))
    if busy is not None:
        raise Conflict(f"dataset {dataset_id!r} is used by job {busy!r}, which is queued or running")
    # Later versions (dataset_versions.py) go too: their rows with the dataset's, their arrays after the commit.
    versions = list(session.scalars(select(DatasetVersion.artifact_key).where(DatasetVersion.dataset_id == dataset_id)))
    # So do its item attributes (app.services.catalogue): the row by the foreign key, the table here.
    versions += list(session.scalars(select(Catalogue.artifact_key).where(Catalogue.dataset_id == dataset_id)))
    session.delete(dataset)
    session.commit()
    store.delete(dataset.artifact_key)
    for key in versions:
        store.delete(key)
