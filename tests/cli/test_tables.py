"""Tables and the live bar fit the terminal: whole columns and words, never 'algo…' or 'runn…'."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from app.client import tables
from app.client.views import JobView

JOB = {
    "id": "job_01a24d560f414e01a7a8ff",
    "status": "succeeded",
    "algorithm": "wals",
    "dataset_id": "ds_01a24d560f070961aa21c6",
    "progress": {"phase": "fit", "step": 3, "total_steps": 15},
    "model_id": "mdl_01a24d560f414e01a7a8ff",
    "created_at": "2026-12-06T21:50:15.304989Z",
}
MODEL = {
    "id": "mdl_01a24d560f414e01a7a8ff",
    "algorithm": "sgd",
    "dim": 64,
    "dataset_id": "ds_01a24d560f070961aa21c6",
    "metrics": {"recall@20": 0.31234, "ndcg@20": 0.2123, "folding": {"leakage@10": 0.0312}},
    "created_at": "2026-12-06T21:50:15.304989Z",
}
DATASET = {
    "id": "ds_01a24d560f070961aa21c6",
    "name": "planted.csv",
    "n_users": 400,
    "n_items": 200,
    "n_interactions": 8123,
    "density": 0.1015,
    "created_at": "2026-12-06T21:50:15.304989Z",
}


def render(renderable: object, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
@pytest.mark.parametrize(
    ("table", "row", "ids"),
    [
        (tables.job_table, JOB, ["job_01a24d560f414e01a7a8ff"]),
        (tables.model_table, MODEL, ["mdl_01a24d560f414e01a7a8ff"]),
        (tables.dataset_table, DATASET, ["ds_01a24d560f070961aa21c6"]),
    ],
)
def test_list_tables_show_whole_columns_that_fit(width: int, table, row, ids):
    text = render(table([row, row]), width)
    assert "…" not in text, text
    assert all(len(line) <= width for line in text.splitlines()), text
    assert all(i in text for i in ids)
    built = table([row]).table(width)
    headers = [column.header for column in built.columns]
    assert all(f" {h} " in text for h in headers), text  # each shown header whole
    hidden = [c.header for c in table([row]).columns if c.header not in headers]
    if hidden:
        assert "not shown at this width: " + ", ".join(hidden) in " ".join(text.split()), text


def test_at_120_columns_the_job_table_shows_algorithm_and_created_in_full():
    text = render(tables.job_table([JOB]), 120)
    for header in ("algorithm", "progress", "model", "created"):
        assert f" {header} " in text, text
    assert "2026-12-06 21:50" in text and "fit 3/15" in text


PROGRESS = {
    "phase": "fit",
    "step": 2,
    "total_steps": 30,
    "unit": "iteration",
    "loss": 0.123456,
    "eta_seconds": 12,
    "metrics": {"ndcg@20": 0.41234, "recall@20": 0.3345},
}


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_live_bar_keeps_whole_words_at_any_width(width: int):
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    with JobView(console, "job_01a24d560f414e01a7a8ff") as view:
        view.show("running", PROGRESS)
    last = console.file.getvalue().rsplit("\r", 1)[-1]  # type: ignore[attr-defined]
    line = last.split("\x1b[2K")[-1].split("\n")[0]
    assert "…" not in line, line
    assert len(line) <= width, line
    assert "running" in line and "2/30" in line and "ETA 12s" in line, line
    if width >= 80:
        assert "loss 0.1235" in line and "recall@20 0.335" in line, line
    if width >= 120:
        assert "job_01a24d560f414e01a7a8ff" in line and "iterations" in line, line
