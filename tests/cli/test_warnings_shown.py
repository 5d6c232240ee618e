"""A model's warnings (e.g. no better than popularity) and the search's choice show in the CLI's tables."""

from __future__ import annotations

from rich.console import Console

from app.client.views import job_summary, model_summary


def _text(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_model_and_job_tables_show_warnings_and_the_choice() -> None:
    metrics = {
        "recall@20": 0.1,
        "baseline": {"popularity": {"recall@20": 0.2}},
        "warnings": ["the model does not beat the popularity baseline on its validation split"],
        "search": {"chosen": {"shrinkage": 0.03, "unobserved_weight": 1.0, "steps": 12}, "trials": []},
    }
    model = {"id": "mdl_1", "algorithm": "wals", "dim": 8, "dataset_id": "ds_1", "job_id": "job_1", "metrics": metrics}
    text = _text(model_summary(model))
    assert "warning" in text and "does not beat the popularity baseline" in text
    assert "chosen by search" in text and "unobserved_weight 1" in text and "steps 12" in text
    job = {
        "id": "job_1",
        "status": "running",
        "algorithm": "wals",
        "dataset_id": "ds_1",
        "created_at": "2026-12-06T00:00:00Z",
        "progress": {"phase": "search", "step": 2, "total_steps": 15, "warnings": ["no better than popularity"]},
        "history": [],
    }
    assert "no better than popularity" in _text(job_summary(job))
