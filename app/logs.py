"""Process logging: plain text for a terminal, one JSON object per line for a log pipeline.

Every record carries the id of the job being trained when there is one (set by the worker's tasks
through `job_context`), so a job's lines can be found among many workers' output.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_job_id: ContextVar[str | None] = ContextVar("unfold_job_id", default=None)
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job_suffix)s: %(message)s"


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log record made inside (on this thread or task) with the job id."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class JobIdFilter(logging.Filter):
    """Adds `job_id` (None outside a job) and a text suffix to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = _job_id.get()
        record.job_id = job_id
        record.job_suffix = f" [{job_id}]" if job_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, job_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter(log_format: str = "text") -> logging.Formatter:
    """JSON or text formatter (also the dictConfig factory)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def dict_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A logging.config.dictConfig for an Unfold process; uvicorn applies it in each of its worker processes."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"unfold": {"()": "app.logs.formatter", "log_format": log_format}},
        "filters": {"job": {"()": "app.logs.JobIdFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "unfold",
                "filters": ["job"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        # uvicorn's own loggers come to the root handler instead of their separate format.
        "loggers": {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
    }


def configure(log_format: str, level: str = "INFO") -> None:
    """Root logging for an Unfold process."""
    logging.config.dictConfig(dict_config(log_format, level))
