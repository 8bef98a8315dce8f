"""``ecr-oci serve``, ``ecr-oci db upgrade``, ``ecr-oci index reconcile|rebuild``: the ECR service.

    $ ecr-oci serve --config ecr.toml                # FastAPI + uvicorn on settings.host:port
    $ ecr-oci db upgrade --config ecr.toml           # apply the Alembic migrations
    $ ecr-oci index reconcile --config ecr.toml --json
    $ ecr-oci index rebuild --config ecr.toml        # empty the index, then walk the registry

Settings come from ``--config`` (TOML) and ``ECR_*`` variables (``ecr_oci.server.settings``); the
flags here override them. docs/service.md describes the service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import echo_json

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ecr_oci.server.settings import Settings

__all__ = ["config_option", "db", "index", "migrated_engine", "serve"]

#: ``--config PATH`` (passed as ``config_path``): the service's settings, for every command that
#: works on its database (``admin bootstrap`` too).
config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML settings file (ECR_* variables override it).",
)


def _settings(config_path: Path | None, **overrides: object) -> Settings:
    # imported here: the other commands need not load FastAPI and SQLAlchemy
    from ecr_oci.server.settings import Settings

    return Settings.load(config_path, **overrides)


@contextmanager
def migrated_engine(settings: Settings) -> Iterator[Engine]:
    """The engine of ``settings.database_url`` with the schema migrations applied; disposed on exit."""
    from ecr_oci.server.db.engine import make_engine
    from ecr_oci.server.db.migrate import upgrade

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


@cli.command()
@config_option
@click.option("--host", default=None, help="Address to listen on [settings: 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="TCP port [settings: 8000].")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def serve(config_path: Path | None, host: str | None, port: int | None, log_level: str) -> None:
    """Run the ECR service: notifications in, index, search API (docs/service.md)."""
    import uvicorn

    from ecr_oci.server.app import create_app

    settings = _settings(config_path, host=host, port=port)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level != "debug":  # one line per registry request would drown the service's own lines
        logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=log_level == "debug",
    )


@cli.group()
def db() -> None:
    """The service's database."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path | None) -> None:
    """Apply the schema migrations (the service also does this when it starts)."""
    from ecr_oci.server.db.migrate import current_revision

    with migrated_engine(_settings(config_path)) as engine:
        click.echo(f"database at revision {current_revision(engine)}")


@cli.group()
def index() -> None:
    """The service's index of the registry."""


def _reconcile(config_path: Path | None, *, rebuild: bool, as_json: bool) -> None:
    from ecr_oci.server.app import service_client
    from ecr_oci.server.db.engine import session_factory
    from ecr_oci.server.services.reconcile import Reconciler

    settings = _settings(config_path)
    with migrated_engine(settings) as engine:
        reconciler = Reconciler(session_factory(engine, write=True), lambda: service_client(settings))
        report = reconciler.run(rebuild=rebuild)
    if as_json:
        echo_json(report.to_json())
    else:
        click.echo(("rebuilt: " if rebuild else "reconciled: ") + report.summary())
        for error in report.errors:
            click.echo(f"  error: {error}", err=True)


@index.command("reconcile")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index_reconcile(config_path: Path | None, as_json: bool) -> None:
    """Walk the registry and make the index match it (what the service does periodically)."""
    _reconcile(config_path, rebuild=False, as_json=as_json)


@index.command("rebuild")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index_rebuild(config_path: Path | None, as_json: bool) -> None:
    """Empty the index, then walk the registry (activity and, later, users are kept)."""
    _reconcile(config_path, rebuild=True, as_json=as_json)
