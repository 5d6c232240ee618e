"""`unfold demo`: folding, shown. Planted communities, SGD with and without negatives, side by side.

The data has G communities of users that consume only their own community's items, joined by a
few noisy interactions. Trained on positives only (negatives `none`), nothing pushes unrelated
communities apart; with uniformly sampled negatives every step does. leakage@10 counts how
much of a user's top 10 comes from communities the user never touched.

Defaults are 8 communities rather than 2: with two, ids reordered by the upload and a dimension
of 16 leave room to keep both communities apart even without negatives (leakage near 0 for
both on most seeds), while eight communities in 16 dimensions fold visibly on every seed tried.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from app.client import tables, views, watch
from app.client.api import JSON, ApiError, UnfoldClient
from app.client.commands import api_errors, err, out

if TYPE_CHECKING:
    from app.recsys.interactions import Interactions

STRATEGIES = ("none", "uniform")
# (label, where in the model's metrics, one line on what it says)
ROWS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "leakage@10",
        ("folding", "leakage@10"),
        "share of top 10 from communities the user never touched (lower is better)",
    ),
    ("unreachable@10", ("folding", "unreachable@10"), "share of top 10 not reachable in two hops of the data"),
    ("positive_auc", ("folding", "positive_auc"), "P(held-out item scores above an untouched one)"),
    ("score_gap", ("folding", "score_gap"), "(mean positive − mean negative score) / std of negatives"),
    ("recall@10", ("recall@10",), "held-out items found in the top 10"),
    ("recall@20", ("recall@20",), "held-out items found in the top 20"),
    ("ndcg@20", ("ndcg@20",), "the same, weighted by rank"),
)


def demo_spec(dataset_id: str, strategy: str, *, dim: int, epochs: int, seed: int) -> JSON:
    """The folding benchmark's SGD recipe (bench/folding.py), with negatives `strategy`."""
    return {
        "dataset_id": dataset_id,
        "algorithm": "sgd",
        "dim": dim,
        "seed": seed,
        "sgd": {
            "variant": "minibatch_sgd",
            "batch_size": 256,
            "epochs": epochs,
            "learning_rate": 0.05,
            "optimizer": "adagrad",
            "loss": "bce",
            "l2": 0.0001,
            "negatives": {"strategy": strategy, "per_positive": 4},
        },
        "evaluation": {"split": "random", "test_fraction": 0.2, "k": [10, 20]},
    }


@api_errors
def demo(
    groups: int = typer.Option(8, min=2, help="Planted communities."),
    users_per_group: int = typer.Option(125, min=10),
    items_per_group: int = typer.Option(50, min=10),
    noise: float = typer.Option(0.05, min=0.0, max=0.5, help="Share of interactions with another community."),
    dim: int = typer.Option(16, min=2, max=256),
    epochs: int = typer.Option(20, min=1, max=200),
    seed: int = typer.Option(0, min=0),
    embedded: bool = typer.Option(False, "--embedded", help="Run in this process even if UNFOLD_URL answers."),
) -> None:
    """Generate planted-community data, train SGD with negatives none and uniform, compare folding."""
    started = time.perf_counter()
    client = UnfoldClient()
    with tempfile.TemporaryDirectory(prefix="unfold-demo-") as tmp:
        data = _write_data(Path(tmp), groups, users_per_group, items_per_group, noise, seed)
        if not embedded and client.healthy():
            err.print(f"mode: [bold]server[/bold] at {client.base_url} (UNFOLD_URL)", highlight=False)
            with client:
                results = _run(client, data, dim=dim, epochs=epochs, seed=seed)
        else:
            client.close()
            from app.client.embedded import embedded_server

            why = "--embedded" if embedded else f"no Unfold API answers at {client.base_url}"
            err.print(
                f"mode: [bold]embedded[/bold] ({why}): an Unfold API in this process, "
                "on a temporary database and folder, training in a background thread",
                highlight=False,
            )
            with embedded_server() as server, UnfoldClient(server.url) as local:
                results = _run(local, data, dim=dim, epochs=epochs, seed=seed)
    out.print(comparison(results, groups))
    out.print(explanation(results), soft_wrap=True)
    err.print(f"demo finished in {time.perf_counter() - started:.1f} s", highlight=False)


def write_planted(path: Path, **fields: Any) -> Interactions:
    """Planted-community data (PlantedConfig fields) written as an uploadable CSV; a bad field is a
    command-line error, not a traceback. Shared by `unfold demo` and `unfold datasets synth`."""
    from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv

    try:
        config = PlantedConfig(**fields)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    data = planted_communities(config)
    write_planted_csv(data, path)
    return data.interactions


def _write_data(folder: Path, groups: int, upg: int, ipg: int, noise: float, seed: int) -> Path:
    path = folder / "planted.csv"
    m = write_planted(
        path,
        n_groups=groups,
        users_per_group=upg,
        items_per_group=ipg,
        interactions_per_user=min(20.0, float(ipg)),
        noise=noise,
        seed=seed,
    )
    err.print(
        f"data: {groups} planted communities, {m.n_users:,} users, {m.n_items:,} items, "
        f"{m.nnz:,} interactions, {noise:.0%} noise (seed {seed})",
        highlight=False,
    )
    return path


def _run(client: UnfoldClient, data: Path, *, dim: int, epochs: int, seed: int) -> dict[str, JSON]:
    """Upload, train one job per strategy, follow them; the models by strategy."""
    dataset = views.upload_with_progress(
        client, data, err, name="unfold-demo", user_group_column="user_group", item_group_column="item_group"
    )
    err.print(f"uploaded {dataset['id']}", highlight=False)
    jobs = {s: client.submit_job(demo_spec(dataset["id"], s, dim=dim, epochs=epochs, seed=seed)) for s in STRATEGIES}
    models: dict[str, JSON] = {}
    for strategy, job in jobs.items():
        final = watch.follow(client, job["id"], err, label=f"negatives={strategy}", poll_seconds=0.5)
        if final["status"] != "succeeded":
            watch.outcome(final, err)
            raise ApiError(f"the {strategy} job ended {final['status']}; no comparison to show")
        models[strategy] = {**client.get_model(final["model_id"]), "seconds": _seconds(final)}
    return models


def _seconds(job: JSON) -> float | None:
    fit = [h["seconds"] for h in job.get("history") or [] if h.get("seconds") is not None]
    return sum(fit) if fit else None


def _metric(model: JSON, path: tuple[str, ...]) -> Any:
    value: Any = model.get("metrics") or {}
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def comparison(models: dict[str, JSON], groups: int) -> Table:
    """metric | negatives=none | negatives=uniform | meaning."""
    table = Table(title=f"folding on {groups} planted communities (SGD, bce loss)", title_justify="left")
    table.add_column("metric", style="bold")
    for strategy in models:
        table.add_column(f"negatives={strategy}", justify="right")
    table.add_column("meaning", style="dim")
    for label, path, meaning in ROWS:
        table.add_row(label, *(tables.number(_metric(m, path)) for m in models.values()), meaning)
    table.add_row(
        "training s", *(tables.number(m.get("seconds"), 3) for m in models.values()), "fit + refit, as the job reported"
    )
    return table


def explanation(models: dict[str, JSON]) -> str:
    """One line on what the table shows."""
    none = _metric(models.get("none", {}), ("folding", "leakage@10"))
    uniform = _metric(models.get("uniform", {}), ("folding", "leakage@10"))
    if none is None or uniform is None:
        return "leakage@10 needs group labels in the data; this run has none."
    if none > uniform:
        ratio = f", {none / uniform:.0f}× less" if uniform > 0 else ""
        return (
            f"Folding: trained on positives only, nothing pushes unrelated communities apart, so "
            f"{none:.1%} of a user's top 10 comes from communities they never touched; uniform "
            f"negatives push them apart and cut that to {uniform:.1%}{ratio}."
        )
    return (
        f"No folding this time: leakage@10 is {none:.1%} without negatives and {uniform:.1%} with "
        "uniform ones (try more communities, or a smaller --dim)."
    )
