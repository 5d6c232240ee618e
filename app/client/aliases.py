"""`unfold aliases`: names (prod, staging) that stand in for a model id in every query."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from app.client.commands import api_errors, connect, out, show
from app.client.specs import set_path
from app.client.tables import number, when

aliases_cli = typer.Typer(
    help="Aliases: names such as prod that stand in for a model id in every query.", no_args_is_help=True
)


@aliases_cli.command("set")
@api_errors
def aliases_set(
    name: str = typer.Argument(..., help="The alias (letters, digits, . _ -)."),
    model: str = typer.Argument(..., help="The model id (or another alias) it should point at."),
) -> None:
    """Point an alias at a model; clients that query the alias get the new model from then on."""
    with connect() as client:
        alias = client.put_alias(name, model)
    out.print(f"{alias['name']} → {alias['model_id']}", highlight=False)


@aliases_cli.command("show")
@api_errors
def aliases_show(name: str = typer.Argument(..., help="The alias.")) -> None:
    """Where an alias points and since when, its retrain policy and its latest retrains."""
    with connect() as client:
        alias = client.get_alias(name)
    out.print(f"{alias['name']} → {alias['model_id']} (since {when(alias['updated_at'])} UTC)", highlight=False)
    policy = alias.get("policy")
    if policy:
        out.print(f"retrain policy: {policy_line(policy)}", highlight=False)
    if alias.get("retrains"):
        show(retrain_table(alias["retrains"]))


def policy_line(policy: dict[str, Any]) -> str:
    """A policy in words: its triggers, its guardrail, how it trains."""
    triggers = [f"every {policy['every_minutes']} min"] if policy.get("every_minutes") else []
    if policy.get("after_events"):
        triggers.append(f"after {policy['after_events']:,} events")
    how = "warm-started" if policy["warm_start"] else "from scratch"
    changes = f", spec changes {json.dumps(policy['spec'])}" if policy.get("spec") else ""
    return (
        f"{' or '.join(triggers)}; moves if {policy['metric']} drops at most {policy['tolerance']:.1%}; {how}{changes}"
    )


def retrain_table(retrains: list[dict[str, Any]]) -> Table:
    """The retrain history, newest first: what ran, what it scored against the current model, what happened."""
    table = Table(title="retrains (newest first)", title_justify="left")
    for column in ("started", "trigger", "outcome", "job", "new model", "current", "new", "why"):
        table.add_column(column, no_wrap=column in ("job", "new model"))
    colours = {"moved": "green", "refused": "yellow", "failed": "red"}
    for r in retrains:
        colour = colours.get(r["outcome"])
        outcome = f"[{colour}]{r['outcome']}[/{colour}]" if colour else r["outcome"]
        table.add_row(
            when(r["created_at"]),
            r["trigger"],
            outcome,
            r["job_id"] or "–",
            r["new_model_id"] or "–",
            number(r["current_value"]),
            number(r["new_value"]),
            escape(r["reason"] or ""),
        )
    return table


@aliases_cli.command("policy")
@api_errors
def aliases_policy(
    name: str = typer.Argument(..., help="The alias."),
    every: int = typer.Option(None, "--every", min=1, help="Retrain every this many minutes (when there is new data)."),
    after_events: int = typer.Option(None, "--after-events", min=1, help="Retrain after this many new events."),
    tolerance: float = typer.Option(0.01, min=0, max=1, help="Largest relative drop of the metric that still moves."),
    metric: str = typer.Option("recall@20", help="The held-out metric compared (recall@k or ndcg@k)."),
    cold: bool = typer.Option(False, "--cold", help="Train from scratch instead of from the alias's model."),
    assignments: list[str] = typer.Option(
        [], "--set", help="A change to the alias model's spec, as PATH=VALUE (e.g. wals.iterations=3); repeatable."
    ),
    off: bool = typer.Option(False, "--off", help="Remove the policy (the alias and its history stay)."),
) -> None:
    """Retrain an alias on a schedule behind a guardrail (docs/events.md), or stop with --off."""
    with connect() as client:
        if off:
            client.delete_policy(name)
            out.print(f"{name}: no retrain policy", highlight=False)
            return
        spec: dict[str, Any] = {}
        try:
            for assignment in assignments:
                set_path(spec, assignment)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--set") from None
        body = {"every_minutes": every, "after_events": after_events, "tolerance": tolerance, "metric": metric,
                "warm_start": not cold, "spec": spec}  # fmt: skip
        policy = client.put_policy(name, body)
    out.print(f"{name}: retrain {policy_line(policy)}", highlight=False)


@aliases_cli.command("delete")
@api_errors
def aliases_delete(name: str = typer.Argument(..., help="The alias.")) -> None:
    """Remove an alias (the model stays)."""
    with connect() as client:
        client.delete_alias(name)
    out.print(f"removed alias {name}", highlight=False)
