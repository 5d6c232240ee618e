"""Settings read from the environment (prefix UNFOLD_); only api/, workers/ and cli read them."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app import limits as request_limits
from app.spec import MAX_K


class Settings(BaseSettings):
    """Everything the service can be configured with; defaults are the embedded shape."""

    model_config = SettingsConfigDict(env_prefix="UNFOLD_", extra="ignore")

    var_dir: Path = Field(Path("var"), description="Where embedded defaults keep their files.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<var_dir>/unfold.db.")
    broker_url: str | None = Field(
        None, description="Celery broker; default a filesystem broker under <var_dir>/broker."
    )
    artifact_root: str | None = Field(None, description="Artifact store; default <var_dir>/artifacts.")
    # artifact_root may be s3://bucket/prefix; credentials come from boto3's chain (AWS_ACCESS_KEY_ID...).
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO); default AWS S3.")
    s3_region: str | None = Field(None, description="S3 region; default boto3's (AWS_DEFAULT_REGION).")
    queue: str = Field("unfold", description="Celery queue the API sends training tasks to.")
    # Distributed jobs (docs/distributed.md): rank 0 is the job's training task, ranks 1… are tasks on this queue.
    rank_queue: str = Field("unfold.ranks", description="Celery queue of the rank tasks of distributed jobs.")
    rendezvous_host: str | None = Field(
        None,
        description="Address the other ranks reach this worker at when it is a distributed job's rank 0; default "
        "the address its hostname resolves to.",
    )
    rendezvous_timeout_seconds: float = Field(
        60.0, gt=0, description="A distributed job fails unless all its ranks joined within this time."
    )
    rank_timeout_seconds: float = Field(
        1800.0,
        gt=0,
        description="Longest a rank waits in one collective (for a hung peer; a dead one fails its peers at once).",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    # Limits (app.limits): every violation is a problem+json naming the field, the limit and the value.
    max_upload_mb: float = Field(
        request_limits.MAX_UPLOAD_MB, gt=0, description="Largest accepted upload, in MiB (413)."
    )
    max_body_mb: float = Field(
        request_limits.MAX_BODY_MB, gt=0, description="Largest request body other than an upload, in MiB (413)."
    )
    max_upload_rows: int = Field(
        request_limits.MAX_UPLOAD_ROWS, ge=1, description="Interactions (data rows) per upload (413)."
    )
    # The spec's own bounds are ceilings: these can only lower them.
    max_dim: int = Field(
        request_limits.MAX_DIM, ge=1, le=request_limits.MAX_DIM, description="Largest embedding `dim` (422)."
    )
    max_wals_iterations: int = Field(
        request_limits.MAX_WALS_ITERATIONS,
        ge=1,
        le=request_limits.MAX_WALS_ITERATIONS,
        description="Largest wals.iterations of a job (422).",
    )
    max_sgd_epochs: int = Field(
        request_limits.MAX_SGD_EPOCHS,
        ge=1,
        le=request_limits.MAX_SGD_EPOCHS,
        description="Largest sgd.epochs of a job (422).",
    )
    max_k: int = Field(MAX_K, ge=1, le=1_000_000, description="Largest `k` of a query (422).")
    max_batch_users: int = Field(
        request_limits.MAX_BATCH_USERS, ge=1, description="Users per batch-recommendation call (422)."
    )
    max_batch_results: int = Field(
        request_limits.MAX_BATCH_RESULTS,
        ge=1,
        description="users × k of a batch call answered as one JSON document (422); NDJSON streams are exempt.",
    )
    max_batch_response_mb: float = Field(
        request_limits.MAX_BATCH_RESPONSE_MB,
        gt=0,
        description="Largest JSON answer of a batch call, estimated before the search, in MiB (413).",
    )
    max_events_per_request: int = Field(
        request_limits.MAX_EVENTS_PER_REQUEST, ge=1, description="Events per POST /v1/datasets/{id}/events (413)."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or one JSON object per line (with job_id) for a log pipeline."
    )
    # Server limits (app/api/server.py), enforced by `unfold api`'s HTTP protocol before the app sees a request.
    max_header_kb: int = Field(64, ge=1, description="Largest request head (request line and headers), in KiB (431).")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="A request's head must arrive within this many seconds of its first byte (408)."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest pause between two reads of a request body (408)."
    )
    access_log: bool = Field(False, description="Log one line per HTTP request (costly on the query path).")
    api_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="API server processes; default one per core, at most 4 (each holds its own model cache).",
    )
    model_cache_mb: float = Field(1024.0, gt=0, description="Memory for models held by the API.")
    worker_concurrency: int = Field(1, ge=1, description="Training tasks run at once per worker.")
    heartbeat_seconds: float = Field(
        30.0, gt=0, description="A running job whose heartbeat is older than 4x this may be resumed."
    )
    search_budget: float = Field(
        3.0,
        ge=1.5,
        le=20,
        description="Most a job's settings search plus its final fit may cost, in fits with fixed settings "
        "(a spec's search.budget overrides it).",
    )
    # Crash safety (app/services/recovery.py, checkpoints.py): every worker runs the reaper/reconciler.
    checkpoint_seconds: float = Field(
        10.0, ge=0, description="Save a running job's training state at most this often (0: every step)."
    )
    max_attempts: int = Field(
        3, ge=1, description="Claims of a job whose worker keeps dying before it fails as 'worker lost'."
    )
    requeue_after_seconds: float = Field(
        60.0, gt=0, description="Send a job again when it has waited this long and an idle worker never got it."
    )
    staging_max_age_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="The worker's janitor removes artifact staging folders nothing wrote to for this long "
        "(left by a process killed mid-upload or mid-publish).",
    )
    torch_threads: int | None = Field(None, ge=1, description="Threads for training; default all cores.")
    # Retrain policies of aliases (app/services/retraining.py): Celery beat sends the check this often.
    retrain_check_seconds: float = Field(
        30.0,
        ge=1,
        description="How often Celery beat (`unfold beat`, or embedded in `unfold up`'s worker) checks the aliases' "
        "retrain policies; a due retrain starts within this long.",
    )
    task_always_eager: bool = Field(False, description="Run training inside the API process (tests).")
    # Tenants (app.services.api_keys): keys are required once one exists, or always with this on.
    require_auth: bool = Field(
        False, description="Every /v1 request needs an API key, even before any key exists (docker-compose: true)."
    )
    metrics_key: str | None = Field(
        None,
        description="When set, GET /metrics needs `Authorization: Bearer <this>` (401 otherwise); unset, /metrics is "
        "open, for a scraper on a private network.",
    )
    auth_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long an API process remembers a key's tenant and whether keys are required "
        "(a revoked key still works for at most this long).",
    )
    max_concurrent_jobs: int = Field(
        8, ge=1, description="Training jobs queued or running at once per tenant; 429 beyond (a tuning run counts one)."
    )
    # Event streams (app/services/job_events.py): each polls the database while it is open.
    max_streams_per_tenant: int = Field(
        10, ge=1, description="Job event streams a tenant may hold open at once per API process; 429 beyond."
    )
    stream_recheck_seconds: float = Field(
        5.0,
        gt=0,
        description="How often an open event stream checks its key again; a revoked key ends it within this "
        "plus UNFOLD_AUTH_CACHE_SECONDS.",
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'unfold.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def resolved_artifact_root(self) -> str:
        return self.artifact_root or str((self.var_dir / "artifacts").resolve())

    @property
    def resolved_api_workers(self) -> int:
        # Queries are CPU-bound numpy/faiss work and one process runs Python on one core at a time.
        return self.api_workers or max(1, min(4, os.cpu_count() or 1))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def limits(self) -> request_limits.Limits:
        """The request limits, as the services take them."""
        return request_limits.Limits(
            max_upload_bytes=self.max_upload_bytes,
            max_body_bytes=int(self.max_body_mb * request_limits.MIB),
            max_upload_rows=self.max_upload_rows,
            max_dim=self.max_dim,
            max_wals_iterations=self.max_wals_iterations,
            max_sgd_epochs=self.max_sgd_epochs,
            max_k=self.max_k,
            max_batch_users=self.max_batch_users,
            max_batch_results=self.max_batch_results,
            max_batch_response_bytes=int(self.max_batch_response_mb * request_limits.MIB),
            max_events_per_request=self.max_events_per_request,
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
