"""Configured ceilings on what one request may ask for, and the checks that enforce them.

The values come from Settings (UNFOLD_MAX_*), read by the API and handed to the services as a
`Limits`; nothing here reads the environment. Every violation is a LimitExceeded naming the
field, the limit, the value and the setting that raises it: 413 for sizes, 422 for values.
The static bounds in app.spec stay as the absolute ceilings of the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import LimitExceeded
from app.recsys.sgd_config import RECIPE_EPOCHS, SEARCH_MAX_EPOCHS
from app.recsys.wals_defaults import ITERATIONS as DEFAULT_WALS_ITERATIONS
from app.spec import MAX_K, TrainingSpec

MIB = 1024 * 1024

# Defaults shared with app.config.Settings.
MAX_UPLOAD_MB = 512.0
MAX_BODY_MB = 64.0
MAX_UPLOAD_ROWS = 100_000_000
# The spec's own bounds (app.spec) are the ceilings: these limits can only lower them.
MAX_DIM = 4096
MAX_WALS_ITERATIONS = 1000
MAX_SGD_EPOCHS = 1000
MAX_BATCH_USERS = 10_000
# A buffered JSON batch answer is built whole in memory (about 60 bytes of Python objects per result
# on top of its JSON): bounded before any search runs. NDJSON streams are not (see check_batch_cost).
MAX_BATCH_RESULTS = 100_000
MAX_BATCH_RESPONSE_MB = 8.0
# Events are validated whole before any is stored: a batch is held in memory (about 1 KB of Python objects each).
MAX_EVENTS_PER_REQUEST = 100_000

SETTINGS = {
    "max_upload_bytes": "UNFOLD_MAX_UPLOAD_MB",
    "max_body_bytes": "UNFOLD_MAX_BODY_MB",
    "max_upload_rows": "UNFOLD_MAX_UPLOAD_ROWS",
    "max_dim": "UNFOLD_MAX_DIM",
    "max_wals_iterations": "UNFOLD_MAX_WALS_ITERATIONS",
    "max_sgd_epochs": "UNFOLD_MAX_SGD_EPOCHS",
    "max_k": "UNFOLD_MAX_K",
    "max_batch_users": "UNFOLD_MAX_BATCH_USERS",
    "max_batch_results": "UNFOLD_MAX_BATCH_RESULTS",
    "max_batch_response_bytes": "UNFOLD_MAX_BATCH_RESPONSE_MB",
    "max_events_per_request": "UNFOLD_MAX_EVENTS_PER_REQUEST",
}


@dataclass(frozen=True)
class Limits:
    """The ceilings in force; built from Settings by the API (`Settings.limits`)."""

    max_upload_bytes: int = int(MAX_UPLOAD_MB * MIB)
    max_body_bytes: int = int(MAX_BODY_MB * MIB)
    max_upload_rows: int = MAX_UPLOAD_ROWS
    max_dim: int = MAX_DIM
    max_wals_iterations: int = MAX_WALS_ITERATIONS
    max_sgd_epochs: int = MAX_SGD_EPOCHS
    max_k: int = MAX_K
    max_batch_users: int = MAX_BATCH_USERS
    max_batch_results: int = MAX_BATCH_RESULTS
    max_batch_response_bytes: int = int(MAX_BATCH_RESPONSE_MB * MIB)
    max_events_per_request: int = MAX_EVENTS_PER_REQUEST


def _over(field: str, value: int, limit: int, name: str, *, status: int = 422, detail: str | None = None) -> None:
    if value > limit:
        raise LimitExceeded(field, value, limit, SETTINGS[name], status=status, detail=detail)


def check_spec(spec: TrainingSpec, limits: Limits, prefix: str = "") -> None:
    """Refuse a training spec that asks for more than the limits allow (only the chosen algorithm's block)."""
    _over(f"{prefix}dim", spec.dim, limits.max_dim, "max_dim")
    if spec.algorithm == "wals":
        iterations = spec.wals.iterations
        if iterations is None and limits.max_wals_iterations < DEFAULT_WALS_ITERATIONS:
            # The default itself is over a lowered limit: say so rather than train past it.
            field = f"{prefix}wals.iterations"
            _over(
                field,
                DEFAULT_WALS_ITERATIONS,
                limits.max_wals_iterations,
                "max_wals_iterations",
                detail=f"{field} is omitted and Unfold's default {DEFAULT_WALS_ITERATIONS} is over the limit of "
                f"{limits.max_wals_iterations} (set by {SETTINGS['max_wals_iterations']}); set it explicitly",
            )
        elif iterations is not None:
            _over(f"{prefix}wals.iterations", iterations, limits.max_wals_iterations, "max_wals_iterations")
    elif spec.sgd.epochs is not None:
        _over(f"{prefix}sgd.epochs", spec.sgd.epochs, limits.max_sgd_epochs, "max_sgd_epochs")
    else:
        # Omitted: the search trains up to its ceiling, a fit with the search off the recipe's epochs.
        omitted = SEARCH_MAX_EPOCHS if spec.search.mode == "auto" else RECIPE_EPOCHS
        field = f"{prefix}sgd.epochs"
        _over(
            field,
            omitted,
            limits.max_sgd_epochs,
            "max_sgd_epochs",
            detail=f"{field} is omitted and Unfold's default {omitted} is over the limit of "
            f"{limits.max_sgd_epochs} (set by {SETTINGS['max_sgd_epochs']}); set it explicitly",
        )


def check_k(k: int, limits: Limits, field: str = "k") -> None:
    """Refuse a query asking for more than max_k items."""
    _over(field, k, limits.max_k, "max_k")


def check_batch_users(n_users: int, limits: Limits) -> None:
    """Refuse a batch query over max_batch_users users."""
    _over(
        "users",
        n_users,
        limits.max_batch_users,
        "max_batch_users",
        detail=f"users has {n_users} entries, over the limit of {limits.max_batch_users} per call "
        f"(set by {SETTINGS['max_batch_users']})",
    )


def check_batch_cost(n_users: int, k: int, response_bytes: int, limits: Limits) -> None:
    """Refuse a buffered batch answer whose size is over the limits, before anything is computed.

    `k` is what each user can get (k, or fewer when the model has fewer items) and `response_bytes`
    an upper bound of the JSON. Streamed (NDJSON) answers are held a chunk at a time and skip this.
    """
    results = n_users * k
    hint = "ask for fewer users or a smaller k, or stream the answer (Accept: application/x-ndjson)"
    _over(
        "users",
        results,
        limits.max_batch_results,
        "max_batch_results",
        detail=f"users × k is {n_users} × {k} = {results} results, over the limit of {limits.max_batch_results} "
        f"per call (set by {SETTINGS['max_batch_results']}); {hint}",
    )
    limit = limits.max_batch_response_bytes
    _over(
        "users",
        response_bytes,
        limit,
        "max_batch_response_bytes",
        status=413,
        detail=f"the answer to {n_users} users × k {k} could take {response_bytes} bytes, over the limit of {limit} "
        f"bytes ({limit / MIB:g} MiB, set by {SETTINGS['max_batch_response_bytes']}); {hint}",
    )


def upload_too_large(limits: Limits, received: int) -> LimitExceeded:
    """The 413 for an upload whose bytes passed max_upload_bytes (`received`: bytes read so far)."""
    limit = limits.max_upload_bytes
    return LimitExceeded(
        "file",
        received,
        limit,
        SETTINGS["max_upload_bytes"],
        status=413,
        detail=f"file: the upload exceeds the limit of {limit} bytes ({limit / MIB:g} MiB, set by "
        f"{SETTINGS['max_upload_bytes']}); {received} bytes were read before it was refused",
    )


def too_many_rows(limits: Limits, rows: int) -> LimitExceeded:
    """The 413 for an upload with more interactions than max_upload_rows."""
    return LimitExceeded(
        "file",
        rows,
        limits.max_upload_rows,
        SETTINGS["max_upload_rows"],
        status=413,
        detail=f"file: the upload has {rows} rows (interactions), over the limit of {limits.max_upload_rows} "
        f"(set by {SETTINGS['max_upload_rows']})",
    )
