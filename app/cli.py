"""The `unfold` command: run the service (up, api, worker, beat, migrate), manage API keys (keys)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from app.client import aliases as client_aliases
from app.client import commands as client
from app.client import demo as client_demo
from app.client import events as client_events
from app.client import tuning as client_tuning
from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

cli = typer.Typer(help="Unfold: train recommendation embeddings and serve them.", no_args_is_help=True)
datasets_cli = typer.Typer(help="Work with interaction datasets.", no_args_is_help=True)
cli.add_typer(datasets_cli, name="datasets")
keys_cli = typer.Typer(
    help="API keys and their tenants. Admin commands: they act on UNFOLD_DATABASE_URL directly "
    "(run them where the API's database is, e.g. docker compose exec api unfold keys ...).",
    no_args_is_help=True,
)
cli.add_typer(keys_cli, name="keys")
console = Console(stderr=True)


class KnownNoise(logging.Filter):
    """Drops log lines that read like problems but are not one (each explained below)."""

    # kombu warns on each connection to a broker URL without a host, and the folder broker of
    # `unfold up` (filesystem://) has no host to give.
    DROPPED = ("No hostname was supplied",)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.DROPPED)


def log_config(log_format: str) -> dict[str, Any]:
    """app.logs' configuration, quieter where third-party libraries report non-problems."""
    from app import logs

    config = logs.dict_config(log_format)
    config["filters"]["known_noise"] = {"()": "app.cli.KnownNoise"}
    config["loggers"]["kombu.connection"] = {"filters": ["known_noise"]}
    # faiss tries its AVX2/AVX-512 builds first and logs each one missing from the wheel before
    # it loads the generic build, which works: INFO lines about a ModuleNotFoundError.
    config["loggers"]["faiss.loader"] = {"level": "WARNING"}
    return config


def _logging() -> None:
    import logging.config

    logging.config.dictConfig(log_config(get_settings().log_format))


@cli.command()
def migrate() -> None:
    """Apply database migrations (Alembic) to UNFOLD_DATABASE_URL."""
    from app.migrate import upgrade

    _logging()
    settings = get_settings()
    upgrade(settings.resolved_database_url)
    console.print(f"[green]database at head[/green]: {_redact(settings.resolved_database_url)}")


@cli.command()
def api(
    migrate_first: bool = typer.Option(False, "--migrate", help="Apply migrations before serving."),
) -> None:
    """Serve the HTTP API on UNFOLD_HOST:UNFOLD_PORT."""
    # Queries are small matrix products run from many request threads at once: BLAS's own
    # thread pool then oversubscribes the cores and serialises on its locks (measured: 19 req/s,
    # p50 820 ms). One BLAS thread per request thread is the fast shape. Set before numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import uvicorn

    from app.api.server import HardenedHttpTools

    settings = get_settings()
    if migrate_first:
        migrate()
    _fresh_metrics_dir(settings.var_dir)
    uvicorn.run(
        "app.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config(settings.log_format),
        # httptools + uvloop parse and schedule in C; per-request access lines cost ~10% of a
        # query's CPU, so they are off unless asked for (request metrics live in /metrics).
        # HardenedHttpTools: httptools with a head size cap and slow head/body timeouts.
        http=HardenedHttpTools,
        loop="uvloop",
        access_log=settings.access_log,
        workers=settings.resolved_api_workers,
    )


def _fresh_metrics_dir(var_dir: Path) -> None:
    """Where each API process writes its metrics for /metrics to sum (app.api.observability).

    Set here, before uvicorn starts the processes and they import prometheus_client (which reads it
    at import), and emptied, so the sums start from this start-up rather than from earlier runs.
    """
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or var_dir / "metrics").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@cli.command()
def worker(
    concurrency: int = typer.Option(None, help="Training tasks at once (default UNFOLD_WORKER_CONCURRENCY)."),
    name: str = typer.Option(None, help="Celery node name (default unfold-<pid>@<host>)."),
    beat: bool = typer.Option(
        False, "--beat", help="Also run Celery beat (the aliases' retrain checks) in this worker; one beat only."
    ),
) -> None:
    """Run a Celery worker that trains the queued jobs."""
    from workers.celery_app import celery_app

    settings = get_settings()
    _logging()
    _explain_root()
    argv = [
        "worker",
        f"--queues={settings.queue},{settings.rank_queue}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--hostname={name or f'unfold-{os.getpid()}@%h'}",
        "--loglevel=INFO",
    ]
    if beat:
        settings.var_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule file there
        argv.append("--beat")
    if settings.resolved_broker_url.startswith("filesystem://"):
        # The folder transport has no fanout exchanges: skip the broadcast features.
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    celery_app.worker_main(argv)


@cli.command("beat")
def beat_command() -> None:
    """Run Celery beat: it sends the check of the aliases' retrain policies every UNFOLD_RETRAIN_CHECK_SECONDS
    (workers run it). Run exactly one (docker-compose's beat service; `unfold up` embeds it in its worker)."""
    from workers.celery_app import celery_app

    settings = get_settings()
    _logging()
    settings.var_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule file there
    celery_app.start(["beat", "--loglevel=INFO"])


def _explain_root() -> None:
    """One plain line instead of Celery's superuser banner, which is about pickle-accepting workers."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    from celery.exceptions import SecurityWarning

    # Celery refuses root outright only when the worker accepts pickle (code a message could run);
    # this one accepts JSON only, so the banner's alarm does not apply.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    logging.getLogger("unfold.worker").info(
        "running as root: tasks are JSON only, so Celery's superuser warning is silenced; "
        "the Docker image runs the worker as the unprivileged user unfold"
    )


@cli.command()
def up() -> None:
    """Run the whole service (migrations, API and one worker with Celery beat); Ctrl-C stops everything."""
    settings = get_settings()
    migrate()

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Both signals stop everything, even where a shell started us with SIGINT ignored; set before
    # the children start so they inherit default handling rather than an ignored SIGINT.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    me = [sys.executable, "-m", "app.cli"]
    # One process, one beat: the worker also sends the retrain checks (the folder broker needs no server for it).
    children = [subprocess.Popen([*me, "worker", "--beat"]), subprocess.Popen([*me, "api"])]
    console.print(f"[bold]Unfold[/bold] on http://{settings.host}:{settings.port}  (Ctrl-C to stop)")

    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = next(child.returncode for child in children if child.poll() is not None) or 1
        console.print("[red]a part of the service exited; stopping the rest[/red]")
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    raise typer.Exit(code)


@datasets_cli.command("synth")
def datasets_synth(
    out: Path = typer.Argument(..., help="CSV to write (user,item,weight,user_group,item_group)."),
    groups: int = typer.Option(2, min=1, help="Disjoint communities."),
    users_per_group: int = typer.Option(500, min=1),
    items_per_group: int = typer.Option(200, min=2),
    interactions_per_user: float = typer.Option(20.0, min=2, help="Mean interactions per user."),
    popularity_exponent: float = typer.Option(1.0, min=0, help="Power-law exponent of item popularity."),
    noise: float = typer.Option(0.0, min=0, max=1, help="Share of interactions with another community."),
    seed: int = typer.Option(0),
) -> None:
    """Write planted-community data that the upload endpoint accepts; groups make leakage measurable."""
    m = client_demo.write_planted(
        out,
        n_groups=groups,
        users_per_group=users_per_group,
        items_per_group=items_per_group,
        interactions_per_user=interactions_per_user,
        popularity_exponent=popularity_exponent,
        noise=noise,
        seed=seed,
    )
    console.print(f"wrote {out}: {m.n_users} users, {m.n_items} items, {m.nnz} interactions, {groups} groups")


@contextmanager
def _key_admin() -> Iterator[Session]:
    """A session on the configured database; a refusal or a database error is one line and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import get_sessionmaker
    from app.errors import DomainError

    url = get_settings().resolved_database_url
    try:
        with get_sessionmaker(url)() as session:
            yield session
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        console.print(f"[red]database error[/red] at {_redact(url)} (is it migrated? unfold migrate): {exc}")
        raise typer.Exit(1) from None


@keys_cli.command("create")
def keys_create(
    tenant: str = typer.Option(..., "--tenant", help="The tenant the key acts as (letters, digits, . _ -)."),
    name: str | None = typer.Option(None, "--name", help="A label to tell keys apart in `keys list`."),
) -> None:
    """Create a key and print it, on stdout alone; only its hash is stored, so it is shown this once."""
    from app.services import api_keys

    with _key_admin() as session:
        key, plaintext = api_keys.create_key(session, tenant, name)
    console.print(f"created {key.id} for tenant [bold]{key.tenant}[/bold]; the key is shown only now")
    typer.echo(plaintext)


@keys_cli.command("list")
def keys_list() -> None:
    """Every key (revoked ones too), newest first; the keys themselves are never shown, only a prefix."""
    from rich.markup import escape
    from rich.table import Table

    from app.services import api_keys

    with _key_admin() as session:
        keys = api_keys.list_keys(session)
    table = Table(title="API keys", title_justify="left")
    for column in ("id", "tenant", "name", "prefix", "created", "last used", "revoked"):
        table.add_column(column, no_wrap=column in ("id", "prefix"))
    for key in keys:
        table.add_row(
            key.id,
            key.tenant,
            escape(key.name) if key.name else "–",
            f"{key.prefix}…",
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
    client.show(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id, as `keys list` shows it.")) -> None:
    """Revoke a key: the API refuses it within UNFOLD_AUTH_CACHE_SECONDS."""
    from app.services import api_keys

    with _key_admin() as session:
        key = api_keys.revoke_key(session, key_id)
    console.print(f"revoked {key.id} (tenant {key.tenant}) at {_when(key.revoked_at)}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "–"


# The client side: commands that talk to an Unfold API over HTTP (UNFOLD_URL, UNFOLD_API_KEY).
datasets_cli.command("upload")(client.datasets_upload)
datasets_cli.command("list")(client.datasets_list)
datasets_cli.command("show")(client.datasets_show)
cli.command("train")(client.train)
cli.add_typer(client.jobs_cli, name="jobs")
cli.add_typer(client.models_cli, name="models")
cli.command("recommend")(client.recommend)
cli.command("similar")(client.similar)
cli.command("fold-in")(client.fold_in)
cli.add_typer(client_aliases.aliases_cli, name="aliases")
cli.add_typer(client_events.events_cli, name="events")
cli.add_typer(client_tuning.tuning_cli, name="tuning")
cli.command("demo")(client_demo.demo)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
