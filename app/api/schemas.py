"""Response and request bodies of the HTTP API (the training spec lives in app.spec)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from app.spec import TrainingSpec
from app.tuning_spec import SearchSpec


def _iso_utc(value: datetime | None) -> str | None:
    # SQLite hands datetimes back without a zone; they are stored in UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(_iso_utc, return_type=str)]
T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last.")


class DatasetOut(_Out):
    id: str
    name: str
    status: str
    format: str
    n_users: int
    n_items: int
    n_interactions: int
    density: float
    checksum: str = Field(description="sha256 of the uploaded bytes.")
    size_bytes: int
    created_at: UtcDatetime
    stats: dict[str, Any]


class JobError(BaseModel):
    type: str
    message: str


class JobOut(_Out):
    id: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    dataset_id: str
    algorithm: str
    spec: dict[str, Any]
    model_id: str | None
    progress: dict[str, Any] | None = Field(
        description="{step, total_steps, fraction, unit, phase, eta_seconds, loss, metrics} while running."
    )
    history: list[dict[str, Any]] = Field(description="One entry per iteration: {step, loss, seconds, metrics}.")
    error: JobError | None
    cancel_requested: bool
    attempts: int
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    kind: str = Field("train", description="train (yields a model) | trial (a tuning trial, scored, no model)")
    tuning_id: str | None = Field(None, description="The tuning run this job belongs to, if any.")


class ModelOut(_Out):
    id: str
    job_id: str
    dataset_id: str
    algorithm: str
    dim: int
    spec: dict[str, Any] = Field(description="The spec with every value Unfold chose filled in.")
    metrics: dict[str, Any]
    index: dict[str, Any]
    created_at: UtcDatetime


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(min_length=1, description="A model id (or another alias).")


class AliasOut(_Out):
    name: str
    model_id: str
    updated_at: UtcDatetime


# The upper bound is UNFOLD_MAX_K, checked by the route (app.limits), so it can be configured.
K = Annotated[int, Field(ge=1, description="How many items to return (1..UNFOLD_MAX_K, default 1000).")]


class ScoredItem(BaseModel):
    item: str
    score: float


class Recommendations(BaseModel):
    model_id: str
    items: list[ScoredItem]


class FoldInRecommendations(Recommendations):
    unknown_items: list[str] = Field(default_factory=list, description="Items ignored: not in the model.")


class FoldInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[str] = Field(min_length=1, max_length=100_000, description="Items the new user interacted with.")
    weights: list[float] | None = Field(None, description="One weight per item (default 1).")
    k: K = 10
    exclude_seen: bool = True


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: list[str] = Field(min_length=1, description="External user ids (up to UNFOLD_MAX_BATCH_USERS).")
    k: K = 10
    exclude_seen: bool = True
    exclude: list[str] = Field(
        default_factory=list, max_length=10_000, description="Items no user in this call gets (unknown ids ignored)."
    )


class BatchRecommendations(BaseModel):
    model_id: str
    results: dict[str, list[ScoredItem]]
    unknown_users: list[str] = Field(default_factory=list, description="Users not in the model (no results).")


class NeighborsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vector: list[float] = Field(min_length=1, description="A query vector of the model's dimension.")
    k: K = 10


class TuningIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: TrainingSpec = Field(description="The base training spec every trial starts from.")
    search: SearchSpec


class TrialOut(_Out):
    number: int
    job_id: str = Field(description="The trial's job: progress and history at /v1/jobs/{job_id}.")
    params: dict[str, Any]
    status: str
    value: float | None = Field(description="The run's metric on the validation split, once succeeded.")
    metrics: dict[str, Any] | None
    worker: str | None = Field(description="The worker that claimed the trial.")
    seconds: float | None
    error: JobError | None


class TuningProgress(BaseModel):
    trials_done: int
    trials_total: int
    trials_failed: int
    fraction: float
    phase: str = Field(description="trials | final (the best trial retrained as a normal job)")


class TuningOut(_Out):
    id: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    dataset_id: str
    metric: str = Field(description="What the leaderboard ranks by (higher is better).")
    spec: dict[str, Any]
    search: dict[str, Any]
    progress: TuningProgress
    best: TrialOut | None
    leaderboard: list[TrialOut] = Field(description="Every trial, best first; unscored trials last.")
    final_job_id: str | None
    model_id: str | None = Field(description="The final model, trained with the best trial's spec.")
    error: JobError | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class EmbeddingMapLegend(BaseModel):
    code: int = Field(description="The colour code of the points it labels; -1 = unknown group.")
    label: str = Field(description="The group's label as written in the data, or a popularity bucket.")
    count: int = Field(description="Points of this colour on the map.")


class EmbeddingMapPoints(BaseModel):
    item: list[str] = Field(description="External item id of each point.")
    x: list[float]
    y: list[float]
    colour: list[int] = Field(description="Colour code of each point (see legend).")


class EmbeddingMapOut(BaseModel):
    model_id: str
    format_version: int
    method: str = Field(description="pca: the item factors of a seeded sample, centred, on their first two axes.")
    n_items: int = Field(description="Items in the model; the map shows at most a few thousand of them.")
    n_points: int
    explained_variance_ratio: list[float] = Field(description="Share of the sample's variance on each axis.")
    colour_by: str = Field(description="group (the data's item groups) | popularity (rank by interactions)")
    group_separation: float | None = Field(
        description="Share of the map's spread that lies between group means (1: apart, 0: folded); "
        "null when coloured by popularity."
    )
    legend: list[EmbeddingMapLegend]
    points: EmbeddingMapPoints
