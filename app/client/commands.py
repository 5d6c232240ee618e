"""The client commands of `unfold`: datasets, train, jobs, models, recommend, similar.

Exit codes: 0 success; for `jobs watch` and `train --watch` 1 the job failed, 2 it was cancelled;
2 also for a bad command line; 3 the API refused the request or could not be reached (the
message says which, on one line).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.markup import escape

from app.client import api, tables, views, watch
from app.client.specs import build_spec
from app.job_status import JobStatus

EXIT_API_ERROR = 3
PIPE_WIDTH = 200

out = Console(soft_wrap=True)  # lines with ids stay whole; tables still fit the width
err = Console(stderr=True)

jobs_cli = typer.Typer(help="Follow, list and cancel training jobs.", no_args_is_help=True)
models_cli = typer.Typer(help="Trained models and their metrics.", no_args_is_help=True)

P = ParamSpec("P")
R = TypeVar("R")


class Format(StrEnum):
    auto = "auto"
    csv = "csv"
    tsv = "tsv"
    parquet = "parquet"
    movielens = "movielens"
    adjacency = "adjacency"


class Algorithm(StrEnum):
    wals = "wals"
    sgd = "sgd"


def api_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an ApiError into its one-line message and exit code 3, never a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except api.ApiError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_API_ERROR) from None

    return run


def connect() -> api.UnfoldClient:
    """A client for UNFOLD_URL / UNFOLD_API_KEY."""
    return api.UnfoldClient()


def show(renderable: RenderableType) -> None:
    """Print a table; piped output (grep, a log) gets room for whole rows instead of 80 columns."""
    if out.is_terminal or os.environ.get("COLUMNS"):
        out.print(renderable)
    else:  # print(width=...) cannot go beyond the console's own width
        Console(file=out.file, width=PIPE_WIDTH, soft_wrap=True).print(renderable)


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


# -- datasets ---------------------------------------------------------------------------------


@api_errors
def datasets_upload(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="Interactions file."),
    format: Format = typer.Option(Format.auto, "--format", "-f", help="File format (detected by default)."),
    name: str = typer.Option(None, help="Dataset name (default: the file name)."),
    user_column: str = typer.Option(None, help="User column: name or 0-based index."),
    item_column: str = typer.Option(None, help="Item column."),
    weight_column: str = typer.Option(None, help="Weight column."),
    timestamp_column: str = typer.Option(None, help="Timestamp column."),
    user_group_column: str = typer.Option(None, help="Known group of each user."),
    item_group_column: str = typer.Option(None, help="Known group of each item (enables leakage@10)."),
    header: bool = typer.Option(None, "--header/--no-header", help="Whether the first line is a header."),
    min_weight: float = typer.Option(None, help="Drop rows whose weight is below this."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the dataset id."),
) -> None:
    """Upload an interactions file (streamed, with a progress bar); prints the new dataset."""
    with connect() as client:
        dataset = views.upload_with_progress(
            client,
            file,
            err,
            format=format.value,
            name=name,
            user_column=user_column,
            item_column=item_column,
            weight_column=weight_column,
            timestamp_column=timestamp_column,
            user_group_column=user_group_column,
            item_group_column=item_group_column,
            has_header=header,
            min_weight=min_weight,
        )
    stats = dataset.get("stats") or {}
    for note in stats.get("notes") or []:  # on stderr, so that -q's stdout stays the id alone
        err.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)
    if quiet:
        out.print(dataset["id"], highlight=False)
        return
    show(tables.dataset_table([dataset]))
    if stats.get("n_item_groups"):
        out.print(f"{stats['n_item_groups']} item groups: models trained on it report leakage@10")


@api_errors
def datasets_list(limit: int = typer.Option(50, min=1, max=500)) -> None:
    """List datasets, newest first."""
    with connect() as client:
        show(tables.dataset_table(client.list_datasets(limit)["items"]))


@api_errors
def datasets_show(dataset_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Show one dataset as JSON (counts, checksum, stats)."""
    with connect() as client:
        _print_json(client.get_dataset(dataset_id))


# -- training ---------------------------------------------------------------------------------


@api_errors
def train(
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset id."),
    algorithm: Algorithm = typer.Option(None, "--algorithm", "-a", help="wals (default) or sgd."),
    spec: Path = typer.Option(None, "--spec", exists=True, dir_okay=False, help="A JSON training spec to start from."),
    assignments: list[str] = typer.Option(
        [], "--set", metavar="PATH=VALUE", help="Set one spec field, e.g. --set wals.l2=0.1 (repeatable; JSON values)."
    ),
    follow: bool = typer.Option(False, "--watch", "-w", help="Follow the job; exit with its outcome."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the job id."),
) -> None:
    """Start a training job: spec file, then options, then each --set (later wins)."""
    try:
        body = build_spec(dataset, algorithm.value if algorithm else None, spec, assignments)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with connect() as client:
        job = client.submit_job(body)
        if quiet:
            out.print(job["id"], highlight=False)
        else:
            out.print(f"job {job['id']} {job['status']} (follow it: unfold jobs watch {job['id']})", highlight=False)
        if follow:
            final = watch.follow(client, job["id"], err)
            raise typer.Exit(watch.outcome(final, out))


# -- jobs -------------------------------------------------------------------------------------


@jobs_cli.command("list")
@api_errors
def jobs_list(
    status: JobStatus = typer.Option(None, "--status", "-s", help="Only jobs in this status."),
    limit: int = typer.Option(50, min=1, max=500),
) -> None:
    """List jobs, newest first."""
    with connect() as client:
        page = client.list_jobs(status.value if status else None, limit)
    show(tables.job_table(page["items"]))


@jobs_cli.command("show")
@api_errors
def jobs_show(
    job_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="The job as the API returns it."),
) -> None:
    """Show a job: status, progress, its model's metrics (or the latest held-out ones), error."""
    with connect() as client:
        job = client.get_job(job_id)
        if as_json:
            _print_json(job)
            return
        model = client.get_model(job["model_id"]) if job.get("model_id") else None
    show(views.job_summary(job, model))


@jobs_cli.command("watch")
@api_errors
def jobs_watch(
    job_id: str = typer.Argument(..., metavar="ID"),
    poll_interval: float = typer.Option(1.0, min=0.05, help="Seconds between polls when events are unavailable."),
    events: bool = typer.Option(True, "--events/--poll", help="Server-sent events (default) or plain polling."),
) -> None:
    """Follow a job with a live progress bar; exit 0 succeeded, 1 failed, 2 cancelled."""
    with connect() as client:
        final = watch.follow(client, job_id, err, poll_seconds=poll_interval, use_events=events)
    raise typer.Exit(watch.outcome(final, out))


@jobs_cli.command("cancel")
@api_errors
def jobs_cancel(job_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    with connect() as client:
        job = client.cancel_job(job_id)
    if job["status"] == "running":
        out.print(f"{job_id} running: cancel requested, it stops at its next step", highlight=False)
    else:
        out.print(f"{job_id} {job['status']}", highlight=False)


# -- models and queries -----------------------------------------------------------------------


@models_cli.command("list")
@api_errors
def models_list(limit: int = typer.Option(50, min=1, max=500)) -> None:
    """List models, newest first, with their headline metrics."""
    with connect() as client:
        show(tables.model_table(client.list_models(limit)["items"]))


@models_cli.command("show")
@api_errors
def models_show(
    model_id: str = typer.Argument(..., metavar="MODEL", help="Model id or alias."),
    as_json: bool = typer.Option(False, "--json", help="The model as the API returns it."),
) -> None:
    """Show a model: metrics, folding diagnostics, the popularity baseline, its index."""
    with connect() as client:
        model = client.get_model(model_id)
    if as_json:
        _print_json(model)
    else:
        show(views.model_summary(model))


@api_errors
def recommend(
    model: str = typer.Argument(..., help="Model id or alias."),
    user: str = typer.Argument(..., help="External user id, as in the uploaded data."),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="How many items."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Allow items the user already has."),
    filter: str = typer.Option(None, "--filter", help="Only items this expression keeps (docs/catalogue.md)."),
    as_json: bool = typer.Option(False, "--json", help="The API's answer as JSON."),
) -> None:
    """Top-k items for a user the model was trained on."""
    with connect() as client:
        answer = client.recommend(model, user, k, exclude_seen=not include_seen, filter=filter)
    if as_json:
        _print_json(answer)
    else:
        show(views.items_table(f"top {k} for user {escape(user)} ({answer['model_id']})", answer))


@api_errors
def similar(
    model: str = typer.Argument(..., help="Model id or alias."),
    item: str = typer.Argument(..., help="External item id."),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="How many items."),
    filter: str = typer.Option(None, "--filter", help="Only items this expression keeps (docs/catalogue.md)."),
    as_json: bool = typer.Option(False, "--json", help="The API's answer as JSON."),
) -> None:
    """The k items nearest to an item (the item itself excluded)."""
    with connect() as client:
        answer = client.similar(model, item, k, filter=filter)
    if as_json:
        _print_json(answer)
    else:
        show(views.items_table(f"items like {escape(item)} ({answer['model_id']})", answer))


@api_errors
def fold_in(
    model: str = typer.Argument(..., help="Model id or alias."),
    items: list[str] = typer.Argument(..., help="Items the new user interacted with (external ids)."),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="How many items."),
    weights: str = typer.Option(None, "--weights", help="One weight per item, comma-separated (default 1 each)."),
    as_json: bool = typer.Option(False, "--json", help="The API's answer as JSON."),
) -> None:
    """Top-k items for a user the model has never seen, from the items they interacted with (fold-in)."""
    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise typer.BadParameter(f"--weights needs numbers separated by commas, got {weights!r}") from None
    with connect() as client:
        answer = client.fold_in(model, items, k, parsed)
    if as_json:
        _print_json(answer)
        return
    show(views.items_table(f"top {k} for a new user with {len(items)} items ({answer['model_id']})", answer))
    if answer.get("unknown_items"):
        err.print(f"ignored, not in the model: {escape(', '.join(answer['unknown_items']))}", soft_wrap=True)
