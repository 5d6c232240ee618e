"""`unfold aliases`: names (prod, staging) that stand in for a model id in every query."""

from __future__ import annotations

import typer

from app.client.commands import api_errors, connect, out
from app.client.tables import when

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
    """Where an alias points, and since when."""
    with connect() as client:
        alias = client.get_alias(name)
    out.print(f"{alias['name']} → {alias['model_id']} (since {when(alias['updated_at'])} UTC)", highlight=False)


@aliases_cli.command("delete")
@api_errors
def aliases_delete(name: str = typer.Argument(..., help="The alias.")) -> None:
    """Remove an alias (the model stays)."""
    with connect() as client:
        client.delete_alias(name)
    out.print(f"removed alias {name}", highlight=False)
