"""List tables that fit the terminal: whole columns, the most useful first, never a header cut to 'algo…'.

Each column has a rank. At render time (the width is the console's) columns are taken by rank while
they fit at their natural width, and shown in their declared order; those left out are named in the
caption, so a user knows a wider terminal shows more. Ids are never cut: an id cut short cannot be
pasted into the next command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

JSON = dict[str, Any]

# A boxed table spends one border per column plus one, and a space either side of each cell.
PER_COLUMN = 3
BORDER = 1


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[JSON], str]  # the cell, as rich markup
    rank: int  # 0: always shown; higher ranks are left out first when the terminal is narrow
    justify: str = "left"
    max_width: int | None = None  # free text (names) is cut at this; ids and numbers never are


class FittedTable:
    """A rich renderable: the table with the columns that fit the width it is rendered at."""

    def __init__(self, title: str, columns: list[Column], rows: Iterable[JSON]) -> None:
        self.title = title
        self.columns = columns
        self.rows = list(rows)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def table(self, width: int) -> Table:
        cells = [[column.value(row) for row in self.rows] for column in self.columns]
        natural = [
            _width([column.header, *column_cells], column.max_width)
            for column, column_cells in zip(self.columns, cells, strict=True)
        ]
        shown: set[int] = set()
        used = BORDER
        for i in sorted(range(len(self.columns)), key=lambda i: (self.columns[i].rank, i)):
            if self.columns[i].rank == 0 or used + natural[i] + PER_COLUMN <= width:
                shown.add(i)
                used += natural[i] + PER_COLUMN
        hidden = [c.header for i, c in enumerate(self.columns) if i not in shown]
        caption = f"not shown at this width: {', '.join(hidden)} (a wider terminal shows them)" if hidden else None
        table = Table(title=self.title, title_justify="left", caption=caption, caption_justify="left")
        order = sorted(shown)
        for i in order:
            column = self.columns[i]
            cut = column.max_width is not None
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=True,
                min_width=natural[i],
                max_width=column.max_width,
                overflow="ellipsis" if cut else "fold",
            )
        for r in range(len(self.rows)):
            table.add_row(*(cells[i][r] for i in order))
        return table


def _width(markup: list[str], cap: int | None) -> int:
    widest = max(Text.from_markup(text).cell_len for text in markup)
    return min(widest, cap) if cap is not None else widest


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return escape(str(value))


def when(timestamp: str | None) -> str:
    """2026-01-02T03:04:05.678Z → 2026-01-02 03:04 (UTC): minutes are enough in a list."""
    return timestamp[:16].replace("T", " ") if timestamp else "–"


def status_text(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def job_steps(job: JSON) -> str:
    p = job.get("progress") or {}
    if not p.get("total_steps"):
        return ""
    return f"{p.get('phase', '')} {p.get('step')}/{p['total_steps']}".strip()


def dataset_table(datasets: list[JSON]) -> FittedTable:
    columns = [
        Column("id", lambda d: d["id"], 0),
        Column("name", lambda d: escape(d["name"]), 1, max_width=30),
        Column("users", lambda d: number(d["n_users"]), 3, "right"),
        Column("items", lambda d: number(d["n_items"]), 3, "right"),
        Column("interactions", lambda d: number(d["n_interactions"]), 2, "right"),
        Column("density", lambda d: number(d["density"], 3), 5, "right"),
        Column("created", lambda d: when(d["created_at"]), 4),
    ]
    return FittedTable("datasets", columns, datasets)


def job_table(jobs: list[JSON]) -> FittedTable:
    columns = [
        Column("id", lambda j: j["id"], 0),
        Column("status", lambda j: status_text(j["status"]), 0),
        Column("algorithm", lambda j: j["algorithm"], 3),
        Column("progress", job_steps, 1),
        Column("model", lambda j: j.get("model_id") or "", 2),
        Column("dataset", lambda j: j["dataset_id"], 5),
        Column("created", lambda j: when(j["created_at"]), 4),
    ]
    return FittedTable("jobs", columns, jobs)


def model_table(models: list[JSON]) -> FittedTable:
    def metric(name: str) -> Callable[[JSON], str]:
        return lambda m: number((m.get("metrics") or {}).get(name))

    def leakage(m: JSON) -> str:
        return number(((m.get("metrics") or {}).get("folding") or {}).get("leakage@10"))

    columns = [
        Column("id", lambda m: m["id"], 0),
        Column("algorithm", lambda m: m["algorithm"], 4),
        Column("dim", lambda m: str(m["dim"]), 5, "right"),
        Column("dataset", lambda m: m["dataset_id"], 7),
        Column("recall@20", metric("recall@20"), 1, "right"),
        Column("ndcg@20", metric("ndcg@20"), 2, "right"),
        Column("leakage@10", leakage, 3, "right"),
        Column("created", lambda m: when(m["created_at"]), 6),
    ]
    return FittedTable("models", columns, models)


def tuning_table(runs: list[JSON]) -> FittedTable:
    def trials(run: JSON) -> str:
        p = run.get("progress") or {}
        return f"{p.get('trials_done', 0)}/{p.get('trials_total', 0)}"

    def best(run: JSON) -> str:
        return number((run.get("best") or {}).get("value"))

    columns = [
        Column("id", lambda r: r["id"], 0),
        Column("status", lambda r: status_text(r["status"]), 0),
        Column("trials", trials, 1, "right"),
        Column("metric", lambda r: r["metric"], 2),
        Column("best", best, 1, "right"),
        Column("model", lambda r: r.get("model_id") or "", 3),
        Column("dataset", lambda r: r["dataset_id"], 5),
        Column("created", lambda r: when(r["created_at"]), 4),
    ]
    return FittedTable("tuning runs", columns, runs)


def leaderboard_table(run: JSON) -> FittedTable:
    def params(trial: JSON) -> str:
        return escape(", ".join(f"{k}={v}" for k, v in trial["params"].items()))

    columns = [
        Column("#", lambda t: str(t["number"]), 0, "right"),
        Column("status", lambda t: status_text(t["status"]), 0),
        Column(run["metric"], lambda t: number(t.get("value")), 0, "right"),
        Column("params", params, 1, max_width=60),
        Column("seconds", lambda t: number(t.get("seconds"), 3), 3, "right"),
        Column("job", lambda t: t["job_id"], 2),
    ]
    return FittedTable(f"tuning run {run['id']}: trials, best first", columns, run.get("leaderboard") or [])
