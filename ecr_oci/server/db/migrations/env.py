"""Alembic environment: our models' metadata; the connection comes from :mod:`..migrate`.

``ecr_oci.server.db.migrate.upgrade`` passes an open connection in ``config.attributes``; there is
no ``alembic.ini`` (the service and ``ecr-oci db upgrade`` are the only callers, so the URL always
comes from the service's settings).
"""

from __future__ import annotations

from alembic import context

from ecr_oci.server.db import accounts  # noqa: F401 - registers the account tables on Base
from ecr_oci.server.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - we never render SQL scripts
    raise RuntimeError("offline migrations are not supported; run `ecr-oci db upgrade`")
run_migrations_online()
