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
from app.client.tables import job_steps, number, status_text, when
from app.job_status import FINISHED

# Metrics shown beside the loss while a job runs, in this order of preference.
LIVE_METRICS = ("recall@20", "ndcg@20", "recall@10", "ndcg@10")


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


# The live bar's parts by rank: rank 0 is always shown; the others, lowest rank first, while the line
# still fits the terminal beside a bar of at least MIN_BAR cells (rich would otherwise squeeze every
# part to "runn… ite… ndcg@2…").
MIN_BAR, MAX_BAR = 10, 40
RANKS = {"status": 0, "steps": 0, "eta": 1, "metric": 1, "loss": 2, "phase": 3, "label": 4, "unit": 5, "metric2": 6}
GAPS = 4  # the spinner's cell and the three spaces between the bar line's four columns


def live_line(width: int, parts: list[tuple[str, str, str]]) -> tuple[str, str, int]:
    """(head, tail, bar width) for `parts` — (name, "head" | "tail", markup) in display order — at `width`."""
    sizes = {
        name: Text.from_markup(text).cell_len + (1 if side == "head" or name == "unit" else 2)
        for name, side, text in parts
    }
    used = GAPS + MIN_BAR
    chosen: set[str] = set()
    for name in sorted(sizes, key=lambda n: RANKS[n]):
        if RANKS[name] == 0 or used + sizes[name] <= width:
            chosen.add(name)
            used += sizes[name]
    head = " ".join(text for name, side, text in parts if side == "head" and name in chosen)
    # Two spaces between the tail's figures, one inside "2/30 iterations".
    tail = "".join(
        ("" if i == 0 else " " if name == "unit" else "  ") + text
        for i, (name, text) in enumerate((n, t) for n, side, t in parts if side == "tail" and n in chosen)
    )
    return head, tail, max(MIN_BAR, min(MAX_BAR, MIN_BAR + width - used))


class JobView:
    """A live progress bar for one job: status, phase, step/total, loss, the latest metrics, ETA."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.bar = BarColumn(bar_width=MAX_BAR)
        self.progress = Progress(
            _StatusColumn(),
            TextColumn("{task.fields[head]}"),
            self.bar,
            TextColumn("{task.fields[tail]}"),
            console=console,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> JobView:
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=None, head=escape(self.label), tail="", status="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, status: str, progress: JSON | None) -> None:
        """Redraw from a job's status and progress (as GET /v1/jobs/{id} or an event gives them)."""
        assert self.task is not None
        p = progress or {}
        total, step = p.get("total_steps"), p.get("step") or 0
        finished = status in FINISHED
        if status == "succeeded" and total:
            step = total
        parts = [("label", "head", escape(self.label)), ("status", "head", f"[bold]{status}[/bold]")]
        if p.get("phase"):
            parts.append(("phase", "head", escape(p["phase"])))
        if total:
            parts.append(("steps", "tail", f"{step}/{total}"))
            if p.get("unit"):
                parts.append(("unit", "tail", f"{escape(p['unit'])}s"))
        if p.get("loss") is not None:
            parts.append(("loss", "tail", f"loss {number(p['loss'])}"))
        metrics = p.get("metrics") or {}
        shown = [m for m in LIVE_METRICS if m in metrics][:2] or sorted(metrics)[:2]
        for name, metric in zip(("metric", "metric2"), shown, strict=False):
            parts.append((name, "tail", f"{escape(metric)} {number(metrics[metric], 3)}"))
        if not finished:
            parts.append(("eta", "tail", f"ETA {duration(p.get('eta_seconds'))}"))
        head, tail, self.bar.bar_width = live_line(self.console.width, parts)
        self.progress.update(self.task, total=total, completed=step, head=head, tail=tail, status=status)


def key_values(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, str) else number(value))
    return table


def metric_rows(metrics: JSON | None) -> list[tuple[str, Any]]:
    """Ranking metrics, then the folding diagnostics, then the popularity baseline, one row each."""
    rest = dict(metrics or {})
    folding = rest.pop("folding", {}) or {}
    baseline = (rest.pop("baseline", {}) or {}).get("popularity", {})
    warnings = rest.pop("warnings", []) or []
    chosen = (rest.pop("search", {}) or {}).get("chosen") or {}
    rows: list[tuple[str, Any]] = [("[bold yellow]warning[/bold yellow]", escape(str(w))) for w in warnings]
    rows += [(name, number(value)) for name, value in sorted(rest.items()) if isinstance(value, int | float)]
    rows += [(f"folding {name}", number(value)) for name, value in sorted(folding.items())]
    rows += [(f"popularity {name}", number(value)) for name, value in sorted(baseline.items())]
    if chosen:
        rows.append(("chosen by search", escape(", ".join(f"{k} {number(v)}" for k, v in chosen.items()))))
    return rows


def _latest_metrics(job: JSON) -> JSON:
    """The held-out metrics of the job's latest step that had some (a finished job's refit has none)."""
    p = job.get("progress") or {}
    if p.get("metrics"):
        return dict(p["metrics"])
    scored = [h for h in job.get("history") or [] if h.get("metrics")]
    return dict(scored[-1]["metrics"]) if scored else {}


def job_summary(job: JSON, model: JSON | None = None) -> Table:
    """A job at a glance; with its model, the model's metrics (held-out, folding, popularity baseline)."""
    rows: list[tuple[str, Any]] = [
        ("status", status_text(job["status"])),
        ("algorithm", job["algorithm"]),
        ("dataset", job["dataset_id"]),
        ("progress", job_steps(job) or "–"),
    ]
    p = job.get("progress") or {}
    if p.get("loss") is not None:
        rows.append(("loss", number(p["loss"])))
    rows += metric_rows(model["metrics"] if model is not None else _latest_metrics(job))
    if model is None:
        rows += [("[bold yellow]warning[/bold yellow]", escape(str(w))) for w in p.get("warnings") or []]
    if job.get("error"):
        rows.append(("error", f"[red]{escape(job['error']['type'])}: {escape(job['error']['message'])}[/red]"))
    rows += [
        ("model", job.get("model_id") or "–"),
        ("created", when(job["created_at"])),
        ("started", when(job.get("started_at"))),
        ("finished", when(job.get("finished_at"))),
    ]
    return key_values(f"job {job['id']}", rows)


def model_summary(model: JSON) -> Table:
    rows: list[tuple[str, Any]] = [
        ("algorithm", model["algorithm"]),
        ("dim", model["dim"]),
        ("dataset", model["dataset_id"]),
        ("job", model["job_id"]),
        ("index", escape(", ".join(f"{k} {v}" for k, v in (model.get("index") or {}).items()))),
    ]
    return key_values(f"model {model['id']}", rows + metric_rows(model.get("metrics")))


def tuning_summary(run: JSON) -> Table:
    p = run.get("progress") or {}
    best = run.get("best") or {}
    rows: list[tuple[str, Any]] = [
        ("status", status_text(run["status"])),
        ("dataset", run["dataset_id"]),
        ("phase", escape(p.get("phase", "–"))),
        ("trials", f"{p.get('trials_done', 0)}/{p.get('trials_total', 0)} ended, {p.get('trials_failed', 0)} failed"),
        (f"best {escape(run['metric'])}", number(best.get("value"))),
        ("best params", escape(", ".join(f"{k}={v}" for k, v in (best.get("params") or {}).items())) or "–"),
        ("final job", run.get("final_job_id") or "–"),
        ("model", run.get("model_id") or "–"),
    ]
    if run.get("error"):
        rows.append(("error", f"[red]{escape(run['error']['type'])}: {escape(run['error']['message'])}[/red]"))
    return key_values(f"tuning run {run['id']}", rows)


def items_table(title: str, answer: JSON) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    for rank, entry in enumerate(answer["items"], 1):
        table.add_row(str(rank), escape(entry["item"]), f"{entry['score']:.4f}")
    return table
