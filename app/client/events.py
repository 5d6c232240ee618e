"""`unfold events send`: a file of interactions posted as events, in batches, with a progress bar.

The file is NDJSON (one event object a line, as the API takes it) or CSV: with a header naming `user` and `item`
(and optionally `weight`, `timestamp`, `event_id`), or without one as user,item[,weight[,timestamp]]. It is read as
it is sent, one batch at a time, so its size does not matter. A refused batch stops the command with the line of
the file it refused; the batches before it are stored (the API stores each batch whole or not at all).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from app.client.api import ApiError, UnfoldClient
from app.client.commands import api_errors, connect, err, out

events_cli = typer.Typer(help="Post interactions that happened after the upload (events).", no_args_is_help=True)

FIELDS = ("user", "item", "weight", "timestamp", "event_id")
BATCH = 5000


@dataclass(frozen=True)
class Batch:
    """NDJSON lines to post, and the file line each came from (the API names lines within the batch)."""

    numbers: list[int]
    lines: list[bytes]


def _csv_event(row: list[str], columns: list[str]) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for name, value in zip(columns, row, strict=False):
        if name not in FIELDS or value == "":
            continue
        event[name] = value
        if name in ("weight", "timestamp"):  # numbers stay numbers; anything else the API judges, naming the line
            with contextlib.suppress(ValueError):
                event[name] = float(value) if name == "weight" else int(value)
    return event


def read_batches(fh: IO[bytes], size: int, csv_format: bool) -> Iterator[Batch]:
    """The file as batches of NDJSON lines; blank lines are skipped, a CSV header too."""
    numbers: list[int] = []
    lines: list[bytes] = []
    columns: list[str] | None = None
    for number, raw in enumerate(fh, start=1):
        if not raw.strip():
            continue
        if csv_format:
            row = next(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
            if columns is None:
                header = [c.strip().lower() for c in row]
                if {"user", "item"} <= set(header):
                    columns = header
                    continue
                columns = ["user", "item", "weight", "timestamp"]
            line = orjson.dumps(_csv_event(row, columns))
        else:
            line = raw.rstrip(b"\r\n")
        numbers.append(number)
        lines.append(line)
        if len(lines) >= size:
            yield Batch(numbers, lines)
            numbers, lines = [], []
    if lines:
        yield Batch(numbers, lines)


def _where(exc: ApiError, batch: Batch) -> str:
    """The refusal with the API's batch line turned into the file's line."""
    if exc.line is not None and 1 <= exc.line <= len(batch.numbers):
        return f"{exc} (line {batch.numbers[exc.line - 1]} of the file)"
    return str(exc)


@events_cli.command("send")
@api_errors
def events_send(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="NDJSON or CSV events."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="The dataset the events belong to."),
    batch_size: int = typer.Option(BATCH, "--batch-size", min=1, max=100_000, help="Events per request."),
    format: str = typer.Option(
        "auto", "--format", "-f", help="ndjson, csv, or auto: NDJSON for .ndjson/.jsonl/.json files, CSV otherwise."
    ),
) -> None:
    """Post a file of events to a dataset in batches (streamed, with a progress bar); prints what was stored."""
    if format not in ("auto", "csv", "ndjson"):
        raise typer.BadParameter("ndjson, csv or auto", param_hint="--format")
    csv_format = format == "csv" or (format == "auto" and file.suffix.lower() not in (".ndjson", ".jsonl", ".json"))
    accepted = duplicates = 0
    with (
        connect() as client,
        Progress(
            TextColumn("sending [bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[events]} events"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress,
        file.open("rb") as fh,
    ):
        task = progress.add_task(escape(file.name), total=file.stat().st_size, events=0)
        for batch in read_batches(fh, batch_size, csv_format):
            try:
                stored = post_batch(client, dataset, batch)
            except ApiError as exc:
                err.print(f"stored {accepted} events before this batch", highlight=False)
                raise ApiError(_where(exc, batch), exc.status) from None
            accepted += stored["accepted"]
            duplicates += stored["duplicates"]
            progress.update(task, completed=fh.tell(), events=accepted + duplicates)
    out.print(f"{accepted} events stored in dataset {dataset} ({duplicates} duplicates)", highlight=False)


def post_batch(client: UnfoldClient, dataset: str, batch: Batch) -> dict[str, Any]:
    """POST one batch as NDJSON; an ApiError carries the batch's line the API refused, if it named one."""
    return client.post_events(dataset, b"\n".join(batch.lines) + b"\n")
