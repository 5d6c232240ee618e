"""Settings read from the environment (prefix UNFOLD_); only api/, workers/ and cli read them."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = Field(512.0, gt=0, description="Largest accepted upload, in MiB.")
    max_batch_users: int = Field(10_000, ge=1, description="Users per batch-recommendation call.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or one JSON object per line (with job_id) for a log pipeline."
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
    torch_threads: int | None = Field(None, ge=1, description="Threads for training; default all cores.")
    task_always_eager: bool = Field(False, description="Run training inside the API process (tests).")

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


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
