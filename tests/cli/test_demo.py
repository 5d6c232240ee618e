"""`unfold demo`: the folding comparison, in-process when no server answers, else on the server."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from app.cli import cli
from tests.cli.conftest import Unfold, closed_port


def _row(output: str, metric: str) -> list[float]:
    line = next(line for line in output.splitlines() if re.search(rf"\b{re.escape(metric)}\b", line))
    cells = [cell.strip() for cell in line.split("│")]
    return [float(cell) for cell in cells[2:4]]


def test_demo_shows_folding_without_negatives_and_none_with_them():
    # Nothing answers at UNFOLD_URL: the demo falls back to an embedded Unfold by itself.
    url = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(cli, ["demo"], env={"UNFOLD_URL": url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mode: embedded" in result.stderr and f"no Unfold API answers at {url}" in result.stderr
    assert "negatives=none" in result.stdout and "negatives=uniform" in result.stdout
    none, uniform = _row(result.stdout, "leakage@10")
    assert none > 5 * uniform and none > 0.01, (none, uniform)
    auc_none, auc_uniform = _row(result.stdout, "positive_auc")
    assert auc_uniform > auc_none
    recall_none, recall_uniform = _row(result.stdout, "recall@20")
    assert recall_uniform > recall_none
    assert "Folding: trained on positives only" in result.stdout
    assert re.search(r"demo finished in \d+\.\d s", result.stderr)


def test_demo_uses_the_server_at_unfold_url_when_it_answers(unfold: Unfold):
    small = ["--groups", "2", "--users-per-group", "20", "--items-per-group", "15", "--epochs", "2"]
    result = unfold("demo", *small)
    assert result.exit_code == 0, result.output
    assert f"mode: server at {unfold.server.url}" in result.stderr
    assert len(_row(result.stdout, "leakage@10")) == 2
    assert "unfold-demo" in unfold("datasets", "list").stdout
