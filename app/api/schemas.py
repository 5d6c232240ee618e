"""Response and request bodies of the HTTP API (the training spec lives in app.spec)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from app.api import catalogue_examples, examples
from app.job_status import JobStatus
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


def _examples(*values: Any) -> ConfigDict:
    """A model's examples for the OpenAPI document (values from app.api.examples)."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


def _page_example(schema: dict[str, Any], cls: type) -> None:
    # Page[X]: one page holding X's first example, with the cursor a longer list would carry.
    args = getattr(cls, "__pydantic_generic_metadata__", {}).get("args", ())
    extra = args[0].model_config.get("json_schema_extra") if args and issubclass(args[0], BaseModel) else None
    if isinstance(extra, dict) and extra.get("examples"):
        first = extra["examples"][0]
        schema["examples"] = [{"items": [first], "next_cursor": first.get("id")}]


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(json_schema_extra=_page_example)

    items: list[T] = Field(description="At most `limit` resources, newest first.")
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page (the last id on this one); null on the last page."
    )


class DatasetOut(_Out):
    """An uploaded dataset (API.md, "Datasets"): its size and what the parser found."""

    model_config = _examples(examples.DATASET)

    id: str = Field(description="Opaque id (`ds_…`); the `dataset_id` of a training spec.")
    name: str = Field(description="The `name` form field, else the uploaded file's name, else the id.")
    status: str = Field(description="ready: parsed and stored (an upload that cannot be parsed leaves no dataset).")
    format: str = Field(description="How the file was read: csv | tsv | parquet | movielens | adjacency.")
    n_users: int = Field(description="Distinct users, after min_weight filtering.")
    n_items: int = Field(description="Distinct items, after min_weight filtering.")
    n_interactions: int = Field(description="Distinct (user, item) pairs; repeated pairs are merged, weights summed.")
    density: float = Field(description="n_interactions / (n_users × n_items).")
    checksum: str = Field(description="sha256 of the uploaded bytes (hex).")
    size_bytes: int = Field(description="Size of the uploaded file in bytes.")
    created_at: UtcDatetime = Field(description="When the upload was stored (ISO 8601 UTC).")
    stats: dict[str, Any] = Field(
        description="What the parser found: format, has_header, columns (the column of each role, by name or "
        "0-based index), rows_read, rows_dropped_min_weight, delimiter, duplicates_merged, weight {min, max, mean}, "
        "user_degree and item_degree {min, median, max}, timestamp {min, max, min_iso, max_iso} when the file has "
        "times, n_user_groups / n_item_groups when it has group columns."
    )


class JobError(BaseModel):
    type: str = Field(description="What failed: the error's class (e.g. ValueError), or WorkerLost.")
    message: str = Field(description="Why, in words a user can act on.")


class JobOut(_Out):
    """A training job (API.md, "Training jobs"); a tuning trial is a job too (kind trial)."""

    model_config = _examples(examples.JOB_SUCCEEDED, examples.JOB_RUNNING, examples.JOB_QUEUED)

    id: str = Field(description="Opaque id (`job_…`); GET /v1/jobs/{id} polls it.")
    status: JobStatus = Field(description="Where the job stands.")
    dataset_id: str = Field(description="The dataset it trains on.")
    algorithm: str = Field(description="wals | sgd, from the spec.")
    spec: dict[str, Any] = Field(
        description="The training spec as submitted, with the schema's defaults written out; values left null are "
        "chosen when training starts (the model's `spec` has them)."
    )
    model_id: str | None = Field(description="The trained model (`mdl_…`) once succeeded; null before and otherwise.")
    progress: dict[str, Any] | None = Field(
        description="Where the job stands: {phase (search: choosing omitted settings on a validation split; fit: "
        "on the training split, with metrics; evaluate; refit: on every interaction; publish: index and "
        "artifact), step, total_steps, unit (iteration | epoch), phase_fraction, fraction and eta_seconds (both "
        "over the whole job), loss, metrics}, plus warnings (e.g. no better than popularity) and resumed_from "
        "{phase, step, attempt} when a new worker continued from a checkpoint; null while queued."
    )
    history: list[dict[str, Any]] = Field(
        description="One entry per iteration or epoch: {step, phase, loss, seconds (that step's time), metrics}; "
        "before them one entry per candidate the settings search tried (phase search: params, rung, dim, steps, "
        "validation scores by step, best)."
    )
    error: JobError | None = Field(description="Why it failed; null unless status is failed.")
    cancel_requested: bool = Field(
        description="A cancel was asked for; a running job stops at its next step and ends cancelled."
    )
    attempts: int = Field(description="Workers that have claimed it: 0 while queued, more when a worker was lost.")
    created_at: UtcDatetime = Field(description="When it was submitted (ISO 8601 UTC).")
    started_at: UtcDatetime | None = Field(description="When a worker first claimed it; null while queued.")
    finished_at: UtcDatetime | None = Field(description="When it succeeded, failed or was cancelled; null before.")
    kind: str = Field("train", description="train (yields a model) | trial (a tuning trial, scored, no model)")
    tuning_id: str | None = Field(None, description="The tuning run this job belongs to, if any.")


class ModelOut(_Out):
    """A trained model (API.md, "Models"): what it was trained with, how it scored, how it is served."""

    model_config = _examples(examples.MODEL)

    id: str = Field(description="Opaque id (`mdl_…`, derived from the job's); an alias works wherever it is taken.")
    job_id: str = Field(description="The job that trained it.")
    dataset_id: str = Field(description="The dataset it was trained on.")
    algorithm: str = Field(description="wals | sgd")
    dim: int = Field(description="Embedding dimension: the length of a /neighbors query vector.")
    spec: dict[str, Any] = Field(
        description="The spec with every value Unfold chose filled in; only the chosen algorithm's block."
    )
    metrics: dict[str, Any] = Field(
        description="On the held-out split (absent with split none): recall@k and ndcg@k for each evaluation k, "
        "baseline.popularity (the same metrics for most-popular items), evaluated_users; always folding: "
        "unreachable@10 (share of top-10 items no user sharing an item ever consumed), positive_auc (0.5 is "
        "chance), score_gap (positives above random items, in standard deviations), users (sample size), and "
        "leakage@10 (share of top-10 items from groups the user never touched) when the data has item groups."
    )
    index: dict[str, Any] = Field(
        description="The serving index: kind (exact | hnsw), metric (dot | cosine), n_items, dim, exact_max_items, "
        "max_fetch, recall@10 measured against exact search at build time, recall_k, build_seconds, "
        "recall_queries, index_bytes; hnsw_m, ef_construction and ef_search for hnsw."
    )
    created_at: UtcDatetime = Field(description="When training stored it (ISO 8601 UTC).")


class AliasIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [examples.ALIAS_IN]})
    model_id: str = Field(min_length=1, description="A model id (or another alias).")


class AliasOut(_Out):
    model_config = _examples(examples.ALIAS)

    name: str = Field(description="The alias; use it in place of a model id in any /v1/models/{model_id} path.")
    model_id: str = Field(description="The model it points at (an alias given in the request is resolved).")
    updated_at: UtcDatetime = Field(description="When it was last pointed (ISO 8601 UTC).")


# The upper bound is UNFOLD_MAX_K, checked by the route (app.limits), so it can be configured.
K = Annotated[int, Field(ge=1, description="How many items to return (1..UNFOLD_MAX_K, default 1000).")]


class ScoredItem(BaseModel):
    item: str = Field(description="External item id, exactly as in the uploaded data.")
    score: float = Field(
        description="Higher is closer: the dot product (or cosine, with index.metric cosine) of the query and item "
        "vectors; cosine similarity for /similar."
    )


class Recommendations(BaseModel):
    """API.md, "Nearest-neighbour queries": at most k items, best first."""

    model_config = _examples(examples.USER_RECOMMENDATIONS, examples.SIMILAR_ITEMS, examples.NEIGHBORS)

    model_id: str = Field(description="The model that answered (an alias in the path is resolved to its id).")
    items: list[ScoredItem] = Field(description="At most k items, best first (fewer when fewer are left).")


# Who answered a user's query (docs/catalogue.md, "Cold start").
Source = Literal["model", "fold_in", "popular"]
SOURCE_DESCRIPTION = (
    "Who answered: model (the user's trained vector), fold_in (a vector folded in from the items sent), "
    "popular (the user is unknown: the most interacted-with items, within the filter; scores are their counts)."
)


class SegmentOut(BaseModel):
    attribute: str = Field(description="The user attribute named by `segment`.")
    value: str | float | bool | list[str] = Field(description="The requesting user's value of it (tags: its values).")
    n_users: int = Field(description="Training users of the model who share the value: whose interactions count.")


class UserRecommendations(Recommendations):
    model_config = _examples(
        {**examples.USER_RECOMMENDATIONS, "source": "model"},
        catalogue_examples.POPULAR,
        catalogue_examples.POPULAR_SEGMENT,
    )

    source: Source = Field("model", description=SOURCE_DESCRIPTION)
    segment: SegmentOut | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="Present when `segment` ranked the popular items: among the training users sharing the "
        "requesting user's value (scores count their interactions). Absent when the global popularity answered.",
    )


class FoldInRecommendations(Recommendations):
    model_config = _examples({**examples.FOLD_IN, "source": "fold_in"})

    unknown_items: list[str] = Field(default_factory=list, description="Items ignored: not in the model.")
    source: Source = Field("fold_in", description=SOURCE_DESCRIPTION)


# A query's filter and diversity (docs/catalogue.md), as body fields of the POST queries.
FILTER_DESCRIPTION = (
    'Only items this expression keeps, e.g. `category = "books" and price < 20` or `@in_stock` (a named filter); '
    "grammar in docs/catalogue.md. An unknown attribute or a syntax error is a 422 naming the position."
)
DIVERSIFY_DESCRIPTION = (
    "Re-rank a larger pool for variety: `mmr` or `mmr:W` (maximal marginal relevance, W in [0, 1] the weight of "
    "relevance, default 0.7), or `ATTRIBUTE:N` (at most N items per value of a categorical attribute)."
)
COLD_ITEMS_FIELD = Field(
    False,
    description="Join in the items that have attributes but no interactions in the model, placed by their "
    "attributes (docs/catalogue.md). Off by default.",
)
FilterField = Annotated[str | None, Field(None, min_length=1, max_length=4000, description=FILTER_DESCRIPTION)]
DiversifyField = Annotated[str | None, Field(None, min_length=1, max_length=200, description=DIVERSIFY_DESCRIPTION)]


class FoldInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [examples.FOLD_IN_REQUEST]})
    items: list[str] = Field(min_length=1, max_length=100_000, description="Items the new user interacted with.")
    weights: list[float] | None = Field(
        None,
        description="One weight per item, finite and >= 0 (default 1); it becomes a confidence as in training. "
        "Repeated items add up.",
    )
    k: K = 10
    exclude_seen: bool = Field(True, description="Leave out the items given in `items`.")
    filter: FilterField = None
    diversify: DiversifyField = None
    cold_items: bool = COLD_ITEMS_FIELD


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [examples.BATCH_REQUEST]})
    users: list[str] = Field(min_length=1, description="External user ids (up to UNFOLD_MAX_BATCH_USERS).")
    k: K = 10
    exclude_seen: bool = Field(True, description="Leave out each user's items from the training data.")
    exclude: list[str] = Field(
        default_factory=list, max_length=10_000, description="Items no user in this call gets (unknown ids ignored)."
    )
    filter: FilterField = None
    diversify: DiversifyField = None
    cold_items: bool = COLD_ITEMS_FIELD
    fallback: Literal["none", "popular"] = Field(
        "none",
        description="none (default for batches): unknown users get no results, as before; popular: they get the "
        "most interacted-with items (within the filter) and are listed in popular_users.",
    )


class BatchRecommendations(BaseModel):
    model_config = _examples({**examples.BATCH, "popular_users": []})

    model_id: str = Field(description="The model that answered (an alias in the path is resolved to its id).")
    results: dict[str, list[ScoredItem]] = Field(description="For each known user: at most k items, best first.")
    unknown_users: list[str] = Field(
        default_factory=list, description="Users not in the model (no results, unless fallback is popular)."
    )
    popular_users: list[str] = Field(
        default_factory=list,
        description="Unknown users answered by the popularity fallback (fallback popular): their results are the "
        "most interacted-with items.",
    )


class NeighborsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [examples.NEIGHBORS_REQUEST]})
    vector: list[float] = Field(
        min_length=1, description="A query vector of the model's dimension (`dim`), finite numbers."
    )
    k: K = 10
    filter: FilterField = None
    diversify: DiversifyField = None
    cold_items: bool = COLD_ITEMS_FIELD


class TuningIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples.TUNING_IN)})
    spec: TrainingSpec = Field(description="The base training spec every trial starts from.")
    search: SearchSpec = Field(
        description="What varies: dotted paths into `spec` with their values; dataset_id, evaluation and index "
        "are shared by every trial."
    )


class TrialOut(_Out):
    number: int = Field(description="The trial's position in the plan, from 0.")
    job_id: str = Field(description="The trial's job: progress and history at /v1/jobs/{job_id}.")
    params: dict[str, Any] = Field(description="The values this trial set, by dotted path.")
    status: JobStatus = Field(description="Its job's status.")
    value: float | None = Field(description="The run's metric on the validation split, once succeeded.")
    metrics: dict[str, Any] | None = Field(description="Every ranking metric of the trial, once succeeded.")
    worker: str | None = Field(description="The worker that claimed the trial.")
    seconds: float | None = Field(description="From claim to end, once finished.")
    error: JobError | None = Field(description="Why the trial failed; null unless it did.")


class TuningProgress(BaseModel):
    trials_done: int = Field(description="Trials that ended (succeeded, failed or cancelled).")
    trials_total: int = Field(description="Trials in the plan.")
    trials_failed: int = Field(description="Trials that failed.")
    fraction: float = Field(description="trials_done / trials_total (0..1).")
    phase: str = Field(description="trials | final (the best trial retrained as a normal job)")


class TuningOut(_Out):
    """A tuning run: trials on a validation split, then the best one retrained into a model."""

    model_config = _examples(examples.TUNING)

    id: str = Field(description="Opaque id (`tun_…`).")
    status: JobStatus = Field(description="Where the run stands.")
    dataset_id: str = Field(description="The dataset every trial trains on.")
    metric: str = Field(description="What the leaderboard ranks by (higher is better).")
    spec: dict[str, Any] = Field(description="The base training spec, with the schema's defaults written out.")
    search: dict[str, Any] = Field(description="The search as submitted, with its defaults written out.")
    progress: TuningProgress = Field(description="How many trials have ended.")
    best: TrialOut | None = Field(description="The best scored trial so far; null until one succeeds.")
    leaderboard: list[TrialOut] = Field(description="Every trial, best first; unscored trials last.")
    final_job_id: str | None = Field(description="The job retraining the best trial's spec, once the trials ended.")
    model_id: str | None = Field(description="The final model, trained with the best trial's spec.")
    error: JobError | None = Field(description="Why the run failed (e.g. NoTrialSucceeded); null unless it did.")
    created_at: UtcDatetime = Field(description="When it was submitted (ISO 8601 UTC).")
    started_at: UtcDatetime | None = Field(description="When a worker claimed its first trial; null before.")
    finished_at: UtcDatetime | None = Field(description="When it ended; null before.")


class EmbeddingMapLegend(BaseModel):
    code: int = Field(description="The colour code of the points it labels; -1 = unknown group.")
    label: str = Field(description="The group's label as written in the data, or a popularity bucket.")
    count: int = Field(description="Points of this colour on the map.")


class EmbeddingMapPoints(BaseModel):
    item: list[str] = Field(description="External item id of each point.")
    x: list[float] = Field(description="Coordinate of each point on the first principal axis.")
    y: list[float] = Field(description="Coordinate of each point on the second principal axis.")
    colour: list[int] = Field(description="Colour code of each point (see legend).")


class EmbeddingMapOut(BaseModel):
    model_config = _examples(examples.EMBEDDING_MAP)

    model_id: str = Field(description="The model whose item factors are mapped.")
    format_version: int = Field(description="Version of the stored map's layout.")
    method: str = Field(description="pca: the item factors of a seeded sample, centred, on their first two axes.")
    n_items: int = Field(description="Items in the model; the map shows at most a few thousand of them.")
    n_points: int = Field(description="Points on the map: the sampled items (the length of each points list).")
    explained_variance_ratio: list[float] = Field(description="Share of the sample's variance on each axis.")
    colour_by: str = Field(description="group (the data's item groups) | popularity (rank by interactions)")
    group_separation: float | None = Field(
        description="Share of the map's spread that lies between group means (1: apart, 0: folded); "
        "null when coloured by popularity."
    )
    legend: list[EmbeddingMapLegend] = Field(description="One entry per colour code used.")
    points: EmbeddingMapPoints = Field(description="Parallel lists, one position per point.")
