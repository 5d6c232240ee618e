"""ORM rows: datasets, training jobs, trained models, aliases, tuning runs and API keys. The schema is owned by Alembic.

Every resource row carries the tenant that owns it; the services filter on it in every query.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.job_status import JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Opaque id that sorts by creation time (ms clock + randomness), so it doubles as a cursor."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(5).hex()}"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


# The tenant of every request when no API key is configured, and of rows that predate keys.
DEFAULT_TENANT = "default"


def _tenant_column() -> Mapped[str]:
    return mapped_column(String(100), index=True, default=DEFAULT_TENANT, server_default=DEFAULT_TENANT)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = _tenant_column()
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    format: Mapped[str] = mapped_column(String(16))
    n_users: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)
    n_interactions: Mapped[int] = mapped_column(Integer)
    density: Mapped[float] = mapped_column(Float)
    checksum: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = _tenant_column()
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column()
    progress: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    history: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # "train" (yields a model) or "trial" (a tuning trial: scored on a validation split, no model).
    kind: Mapped[str] = mapped_column(String(16), default="train", server_default="train")
    tuning_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = _tenant_column()
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    dim: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    index: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alias(Base):
    __tablename__ = "aliases"

    # Names are unique per tenant: two tenants may both have a "prod".
    tenant: Mapped[str] = mapped_column(
        String(100), primary_key=True, index=True, default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(40), ForeignKey("models.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TuningRun(Base):
    """A hyperparameter search: trials are jobs of kind "trial"; the best one is retrained as a job."""

    __tablename__ = "tuning_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = _tenant_column()
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column()
    search: Mapped[dict[str, Any]] = mapped_column()
    metric: Mapped[str] = mapped_column(String(32))
    trials_total: Mapped[int] = mapped_column(Integer)
    best_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    final_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class TuningTrial(Base):
    """One trial of a tuning run: its parameters and validation metrics; the job row runs it."""

    __tablename__ = "tuning_trials"

    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tuning_id: Mapped[str] = mapped_column(String(40), ForeignKey("tuning_runs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column()
    metrics: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class ApiKey(Base):
    """A key a tenant authenticates with; only its sha256 is stored (the key is shown once)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Keys are 256 random bits, so a fast unsalted hash is enough: nothing to brute-force.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Rendezvous(Base):
    """Where the ranks of a distributed job's attempt meet: rank 0's torch.distributed store address.

    One row per job, rewritten by each attempt's rank 0; a rank task whose attempt is not the row's (nor the
    job's) belongs to an attempt that is over and leaves.
    """

    __tablename__ = "rendezvous"

    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(300))  # host:port of rank 0's TCPStore
    world: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Events and dataset versions (issue 19) -------------------------------------------------------------------------

# A sequence number that SQLite can autoincrement (its rowid is an INTEGER PRIMARY KEY) and PostgreSQL holds in 64 bits.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    """One interaction posted after the upload; `seq` orders a dataset's events, and a version folds them in up to one.

    Stored before the POST is answered; `event_id`, when the client gives one, makes a retried post a no-op.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("dataset_id", "event_id", name="uq_events_dataset_event_id"),
        Index("ix_events_dataset_seq", "dataset_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = _tenant_column()
    dataset_id: Mapped[str] = mapped_column(String(40), ForeignKey("datasets.id", ondelete="CASCADE"))
    event_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    user: Mapped[str] = mapped_column(String(500))
    item: Mapped[str] = mapped_column(String(500))
    weight: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # unix seconds, as uploads store them
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(Base):
    """Version 2 and later of a dataset: the one before it with the events up to `events_through` folded in.

    Version 1 is the upload itself (the dataset row and its artifact), so it has no row here.
    """

    __tablename__ = "dataset_versions"

    dataset_id: Mapped[str] = mapped_column(String(40), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = _tenant_column()
    artifact_key: Mapped[str] = mapped_column(String(200))
    events_through: Mapped[int] = mapped_column(_SEQ)  # the seq of the last event folded in
    n_events: Mapped[int] = mapped_column(Integer)  # events folded in by this version (since the one before)
    n_users: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)
    n_interactions: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RetrainPolicy(Base):
    """An alias's retrain schedule and guardrail: retrain every N minutes or after M new events, warm-started
    from the alias's model; the alias moves to the new model only if its held-out metric is within `tolerance`.

    `events_through` and `last_retrain_at` are the scheduler's state: the events the last retrain saw, and when.
    """

    __tablename__ = "retrain_policies"
    __table_args__ = (
        ForeignKeyConstraint(["tenant", "alias"], ["aliases.tenant", "aliases.name"], ondelete="CASCADE"),
    )

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    every_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    after_events: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metric: Mapped[str] = mapped_column(String(32))
    tolerance: Mapped[float] = mapped_column(Float)
    warm_start: Mapped[bool] = mapped_column(Boolean)
    spec: Mapped[dict[str, Any]] = mapped_column()  # overrides of the alias model's own spec
    events_through: Mapped[int | None] = mapped_column(_SEQ, nullable=True)
    last_retrain_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Retrain(Base):
    """One retrain of an alias's policy: its job, and once that ended whether the guardrail moved the alias."""

    __tablename__ = "retrains"
    __table_args__ = (
        ForeignKeyConstraint(["tenant", "alias"], ["aliases.tenant", "aliases.name"], ondelete="CASCADE"),
        Index("ix_retrains_alias", "tenant", "alias", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    alias: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(16))  # "schedule" or "events"
    outcome: Mapped[str] = mapped_column(String(16), index=True)  # training, moved, refused, failed
    reason: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    dataset_id: Mapped[str] = mapped_column(String(40))
    dataset_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    current_model_id: Mapped[str] = mapped_column(String(40))  # where the alias pointed when the retrain began
    new_model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    metric: Mapped[str] = mapped_column(String(32))
    tolerance: Mapped[float] = mapped_column(Float)
    current_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    new_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)


# --- Catalogue: item attributes and named filters (issue 20) ---------------------------------------------------------


class Catalogue(Base):
    """The current version of a dataset's item (or user) attributes; the columns live in the artifact store at
    artifact_key. One row per dataset and kind.

    Each upload writes a new version (the row's `version` moves on only if no other upload moved it first).
    """

    __tablename__ = "catalogues"

    dataset_id: Mapped[str] = mapped_column(String(40), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    # "items" (what filters, cold items and diversify read) or "users" (segment popularity for unknown users).
    kind: Mapped[str] = mapped_column(String(10), primary_key=True, default="items", server_default="items")
    tenant: Mapped[str] = _tenant_column()
    version: Mapped[int] = mapped_column(Integer)
    # {"columns": [{"name", "kind"}], ...}: what filters may name, in upload order.
    attributes: Mapped[dict[str, Any]] = mapped_column()
    n_rows: Mapped[int] = mapped_column(Integer)
    n_unknown: Mapped[int] = mapped_column(Integer)  # rows whose id is not an item (user) of the dataset
    artifact_key: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NamedFilter(Base):
    """A filter expression stored under a name, so queries can say `@name` (per tenant, like aliases)."""

    __tablename__ = "named_filters"

    tenant: Mapped[str] = mapped_column(
        String(100), primary_key=True, index=True, default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    expression: Mapped[str] = mapped_column(String(4000))
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
