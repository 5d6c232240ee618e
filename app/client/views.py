"""How the command line shows things: rich tables, the upload bar and a job's live progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from app.client.api import JSON, UnfoldClient

# Metrics shown beside the loss while a job runs, in this order of preference.
LIVE_METRICS = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return escape(str(value))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def upload_with_progress(client: UnfoldClient, path: Path, console: Console, **form: Any) -> JSON:
    """Stream a file to POST /v1/datasets; the bar advances as httpx reads each chunk to send."""
    with (
        Progress(
            TextColumn("uploading [bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a bar that vanishes is only noise in a log
        ) as progress,
        path.open("rb") as fh,
    ):
        reader = progress.wrap_file(fh, total=path.stat().st_size, description=escape(path.name))
        return client.upload_dataset(reader, path.name, **form)


class _StatusColumn(SpinnerColumn):
    """A spinner while the job may still change, then a mark for how it ended."""

    MARKS = {"succeeded": "[green]✓[/green]", "failed": "[red]✗[/red]", "cancelled": "[yellow]–[/yellow]"}

    def render(self, task: Task) -> RenderableType:
        mark = self.MARKS.get(task.fields.get("status", ""))
        return Text.from_markup(mark) if mark else super().render(task)


class JobView:
    """A live progress bar for one job: phase, step/total, loss, the latest metrics, ETA."""

    def __init__(self, console: Console, label: str) -> None:
        self.label = label
        self.progress = Progress(
            _StatusColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}"),
            TextColumn("{task.fields[details]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> JobView:
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=None, steps="", details="", eta="–", status="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, status: str, progress: JSON | None) -> None:
        """Redraw from a job's status and progress (as GET /v1/jobs/{id} or an event gives them)."""
        assert self.task is not None
        p = progress or {}
        phase = p.get("phase") or ""
        description = f"{escape(self.label)} [bold]{status}[/bold]" + (f" {phase}" if phase else "")
        total, step = p.get("total_steps"), p.get("step") or 0
        details = []
        if p.get("loss") is not None:
            details.append(f"loss {number(p['loss'])}")
        metrics = p.get("metrics") or {}
        shown = [m for m in LIVE_METRICS if m in metrics][:2] or sorted(metrics)[:2]
        details += [f"{m} {number(metrics[m], 3)}" for m in shown]
        finished = status in ("succeeded", "failed", "cancelled")
        if status == "succeeded" and total:
            step = total
        self.progress.update(
            self.task,
            description=description,
            total=total,
            completed=step,
            steps=f"{step}/{total} {p.get('unit', '')}s" if total else "",
            details="  ".join(details),
            eta="–" if finished else duration(p.get("eta_seconds")),
            status=status,
        )


def when(timestamp: str | None) -> str:
    """2026-01-02T03:04:05.678Z → 2026-01-02 03:04:05 (UTC)."""
    return timestamp[:19].replace("T", " ") if timestamp else "–"


def _id_column(table: Table, name: str = "id") -> None:
    # An id that a terminal cuts short cannot be pasted into the next command.
    table.add_column(name, no_wrap=True, min_width=26)


def key_values(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, str) else number(value))
    return table


def dataset_table(datasets: list[JSON]) -> Table:
    table = Table(title="datasets", title_justify="left")
    _id_column(table)
    for column in ("name", "users", "items", "interactions", "density", "created"):
        table.add_column(column, justify="right" if column in ("users", "items", "interactions", "density") else "left")
    for d in datasets:
        table.add_row(
            d["id"],
            escape(d["name"]),
            number(d["n_users"]),
            number(d["n_items"]),
            number(d["n_interactions"]),
            number(d["density"], 3),
            when(d["created_at"]),
        )
    return table


def job_steps(job: JSON) -> str:
    p = job.get("progress") or {}
    if not p.get("total_steps"):
        return ""
    return f"{p.get('phase', '')} {p.get('step')}/{p['total_steps']}".strip()


def job_table(jobs: list[JSON]) -> Table:
    table = Table(title="jobs", title_justify="left")
    _id_column(table)
    table.add_column("status", min_width=9)
    table.add_column("algorithm", min_width=4)
    _id_column(table, "dataset")
    table.add_column("progress")
    _id_column(table, "model")
    table.add_column("created")
    for j in jobs:
        table.add_row(
            j["id"],
            status_text(j["status"]),
            j["algorithm"],
            j["dataset_id"],
            job_steps(j),
            j.get("model_id") or "",
            when(j["created_at"]),
        )
    return table


def status_text(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def job_summary(job: JSON) -> Table:
    rows: list[tuple[str, Any]] = [
        ("status", status_text(job["status"])),
        ("algorithm", job["algorithm"]),
        ("dataset", job["dataset_id"]),
        ("progress", job_steps(job) or "–"),
    ]
    p = job.get("progress") or {}
    if p.get("loss") is not None:
        rows.append(("loss", number(p["loss"])))
    for name, value in sorted((p.get("metrics") or {}).items()):
        rows.append((name, number(value)))
    if job.get("error"):
        rows.append(("error", f"[red]{escape(job['error']['type'])}: {escape(job['error']['message'])}[/red]"))
    rows += [
        ("model", job.get("model_id") or "–"),
        ("created", when(job["created_at"])),
        ("started", when(job.get("started_at"))),
        ("finished", when(job.get("finished_at"))),
    ]
    return key_values(f"job {job['id']}", rows)


def model_table(models: list[JSON]) -> Table:
    table = Table(title="models", title_justify="left")
    _id_column(table)
    table.add_column("algorithm", min_width=4)
    table.add_column("dim", min_width=3)
    _id_column(table, "dataset")
    for column in ("recall@20", "ndcg@20", "leakage@10", "created"):
        table.add_column(column)
    for m in models:
        metrics = m.get("metrics") or {}
        table.add_row(
            m["id"],
            m["algorithm"],
            str(m["dim"]),
            m["dataset_id"],
            number(metrics.get("recall@20")),
            number(metrics.get("ndcg@20")),
            number((metrics.get("folding") or {}).get("leakage@10")),
            when(m["created_at"]),
        )
    return table


def model_summary(model: JSON) -> Table:
    metrics = dict(model.get("metrics") or {})
    folding = metrics.pop("folding", {}) or {}
    baseline = (metrics.pop("baseline", {}) or {}).get("popularity", {})
    rows: list[tuple[str, Any]] = [
        ("algorithm", model["algorithm"]),
        ("dim", model["dim"]),
        ("dataset", model["dataset_id"]),
        ("job", model["job_id"]),
        ("index", escape(", ".join(f"{k} {v}" for k, v in (model.get("index") or {}).items()))),
    ]
    rows += [(name, number(value)) for name, value in sorted(metrics.items()) if not isinstance(value, dict)]
    rows += [(f"folding {name}", number(value)) for name, value in sorted(folding.items())]
    rows += [(f"popularity {name}", number(value)) for name, value in sorted(baseline.items())]
    return key_values(f"model {model['id']}", rows)


def items_table(title: str, answer: JSON) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    for rank, entry in enumerate(answer["items"], 1):
        table.add_row(str(rank), escape(entry["item"]), f"{entry['score']:.4f}")
    return table
