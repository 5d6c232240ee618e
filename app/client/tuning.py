"""`unfold tuning`: start a search over training settings, follow its leaderboard, cancel it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from app.client import tables, views
from app.client.commands import EXIT_API_ERROR, Algorithm, api_errors, connect, err, out, show
from app.client.specs import build_spec, parse_value
from app.job_status import FINISHED

tuning_cli = typer.Typer(
    help="Tuning runs: trials over a grid or random search on a validation split, then the best retrained.",
    no_args_is_help=True,
)


def search_params(assignments: list[str]) -> dict[str, Any]:
    """`--param wals.l2=[1,10]` or `--param sgd.learning_rate={"low":0.001,"high":0.1,"log":true}`."""
    params: dict[str, Any] = {}
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        value = parse_value(raw.strip())
        if not sep or not path.strip() or not isinstance(value, list | dict):
            raise typer.BadParameter(
                f"--param needs PATH=VALUES with a JSON list (wals.l2=[1,10]) or range "
                f'({{"low": 0.001, "high": 0.1, "log": true}}), got {assignment!r}'
            )
        params[path.strip()] = value
    return params


@tuning_cli.command("start")
@api_errors
def tuning_start(
    params: list[str] = typer.Option(
        ..., "--param", "-p", metavar="PATH=VALUES", help="A searched setting: wals.l2=[1,10] (repeatable)."
    ),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Dataset id."),
    algorithm: Algorithm = typer.Option(None, "--algorithm", "-a", help="wals (default) or sgd."),
    spec: Path = typer.Option(None, "--spec", exists=True, dir_okay=False, help="A JSON base spec to start from."),
    assignments: list[str] = typer.Option([], "--set", metavar="PATH=VALUE", help="Set one base-spec field."),
    method: str = typer.Option("grid", "--method", help="grid (every combination) or random."),
    trials: int = typer.Option(None, "--trials", min=1, help="random: draws; grid: a sample of this many."),
    metric: str = typer.Option(None, "--metric", help="What ranks the trials, e.g. recall@20 (default ndcg@20)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the run's id."),
) -> None:
    """Start a tuning run: a base spec (as `unfold train` builds it) and the settings to search."""
    try:
        base = build_spec(dataset, algorithm.value if algorithm else None, spec, assignments)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    search: dict[str, Any] = {"method": method, "params": search_params(params)}
    search |= {key: value for key, value in (("trials", trials), ("metric", metric)) if value is not None}
    with connect() as client:
        run = client.submit_tuning(base, search)
    if quiet:
        out.print(run["id"], highlight=False)
        return
    total = (run.get("progress") or {}).get("trials_total", "?")
    out.print(
        f"tuning run {run['id']} {run['status']}: {total} trials ranked by {run['metric']} "
        f"(follow it: unfold tuning show {run['id']})",
        highlight=False,
    )


@tuning_cli.command("list")
@api_errors
def tuning_list(limit: int = typer.Option(50, min=1, max=500)) -> None:
    """List tuning runs, newest first."""
    with connect() as client:
        show(tables.tuning_table(client.list_tuning(limit)["items"]))


@tuning_cli.command("show")
@api_errors
def tuning_show(tuning_id: str = typer.Argument(..., metavar="ID")) -> None:
    """A run's status, best trial and model, then its leaderboard."""
    with connect() as client:
        run = client.get_tuning(tuning_id)
    show(views.tuning_summary(run))
    show(tables.leaderboard_table(run))


@tuning_cli.command("cancel")
@api_errors
def tuning_cancel(tuning_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Cancel a run: its queued and running trials stop, and no final model is trained."""
    with connect() as client:
        before = client.get_tuning(tuning_id)
        if before["status"] in FINISHED:
            # The API answers a finished run unchanged: say that nothing was cancelled, and exit non-zero.
            err.print(f"tuning run {tuning_id} had already {before['status']}; nothing was cancelled")
            raise typer.Exit(EXIT_API_ERROR)
        run = client.cancel_tuning(tuning_id)
    out.print(f"{tuning_id} {run['status']}", highlight=False)
