"""Engines and sessions for SQLite (embedded default) and PostgreSQL (at scale).

    >>> engine = make_engine("sqlite://")          # in memory
    >>> engine.dialect.name
    'sqlite'
    >>> Session = session_factory(engine)

SQLite gets WAL (readers do not block the writer), foreign keys on (SQLite leaves them off by
default, and the index relies on ON DELETE CASCADE), and a busy timeout so that the notification
handler and a reconcile pass wait for each other instead of failing with "database is locked".
``postgresql://`` URLs are mapped to the psycopg 3 driver, the one we depend on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["make_engine", "normalize_url", "session_factory"]

#: How long a SQLite connection waits for the write lock before "database is locked" (ms).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str | URL) -> URL:
    """The URL with ``postgresql://`` and ``postgres://`` mapped to ``postgresql+psycopg://``."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite's folder is created and its connections set up for the index.

    Raises ``sqlalchemy.exc.ArgumentError`` for a URL SQLAlchemy cannot parse.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; let SQLAlchemy
        # emit BEGIN itself (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL")
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # see the "begin" listener in make_engine
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL survives a process crash intact; a power loss may drop the last commits,
        # which the next reconcile restores (the index is rebuildable from the registry)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


#: Execution option naming the SQLite BEGIN statement (see :func:`session_factory`).
_BEGIN_OPTION = "ecr_sqlite_begin"


def session_factory(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (routes read them after the transaction).

    ``write=True`` is for sessions that write (the indexer): on SQLite their transactions start with
    ``BEGIN IMMEDIATE``, taking the write lock up front. Why: a deferred transaction that read first
    and then wants to write while another connection committed meanwhile fails at once with
    SQLITE_BUSY (the busy timeout cannot help it); taking the lock first makes writers queue
    instead. Readers keep plain ``BEGIN`` so searches never wait on the indexer (WAL).
    """
    if write and engine.dialect.name == "sqlite":
        engine = engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
    return sessionmaker(engine, expire_on_commit=False)
