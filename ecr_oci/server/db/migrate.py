"""Apply the Alembic migrations (at service start and by ``ecr-oci db upgrade``).

    >>> from ecr_oci.server.db.engine import make_engine
    >>> engine = make_engine("sqlite://")
    >>> upgrade(engine)
    >>> current_revision(engine) == head_revision()
    True

Why programmatic (no ``alembic.ini``): the migrations ship inside the package and the database URL
comes from the service's settings, so there is one way to migrate and nothing to configure twice.
With several replicas starting at once on PostgreSQL, an advisory lock serialises the upgrades.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

__all__ = ["current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock key for migrations ("ecrmigr" as a number; any constant would do).
_MIGRATE_LOCK = 0x6563726D69677200 >> 8


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent: a current database is left as it is)."""
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
