"""The audit log: logins, tokens issued, rule changes, pushes and pulls (``audit_record``).

    >>> entry = AuditEntry(actor="ana", action="login", outcome="ok", source_addr="127.0.0.1")
    >>> entry.action, entry.detail
    ('login', {})

Rule changes are written in the same transaction as the change (:func:`audit_now`): a change
without its record, or a record of a change that rolled back, must not exist. Token-endpoint
entries (a login and a token per request, thousands a second) go through :class:`AuditLog`, which
queues them in memory and writes them in batches from one thread (every :attr:`AuditLog.interval`
seconds, or at :attr:`AuditLog.batch` entries), so the token endpoint never waits on a write lock.
The price: entries of the last interval are lost if the process is killed (a clean stop flushes).

Secrets never reach an entry: callers pass names, scopes and outcomes, never passwords or tokens.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.server.db.accounts import AuditRecord

__all__ = ["AuditEntry", "AuditLog", "audit_now"]

log = logging.getLogger("ecr_oci.server.audit")


@dataclass(frozen=True)
class AuditEntry:
    actor: str | None
    action: str
    outcome: str = "ok"
    target: str | None = None
    source_addr: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        """The table row; NUL characters are dropped (PostgreSQL text and JSONB refuse them, and a
        caller-supplied value must not be able to make its own record unwritable)."""
        return {
            "time": self.time,
            "actor": _clean(self.actor),
            "action": self.action,
            "outcome": self.outcome,
            "target": _clean((self.target or "")[:512]) or None,
            "source_addr": _clean(self.source_addr),
            "detail": _clean_json(self.detail),
        }


def _clean(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean_json(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def audit_now(session: Session, entry: AuditEntry) -> None:
    """Write ``entry`` in ``session``'s transaction (rule changes)."""
    session.execute(insert(AuditRecord), [entry.row()])


class AuditLog:
    """Buffered writer for high-rate entries; :meth:`start` it, :meth:`add` entries, :meth:`stop`."""

    def __init__(self, sessions: sessionmaker[Session], *, interval: float = 0.5, batch: int = 500) -> None:
        self.sessions = sessions
        self.interval = interval
        self.batch = batch
        self._pending: list[AuditEntry] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, entry: AuditEntry) -> None:
        with self._lock:
            self._pending.append(entry)
            full = len(self._pending) >= self.batch
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is queued now; returns how many entries were written."""
        with self._lock:
            entries, self._pending = self._pending, []
        if not entries:
            return 0
        try:
            with self.sessions.begin() as session:
                session.execute(insert(AuditRecord), [e.row() for e in entries])
            return len(entries)
        except Exception:
            log.exception("could not write %d audit entries at once; writing them one by one", len(entries))
        written = 0
        for entry in entries:  # one bad entry must not take the others with it
            try:
                with self.sessions.begin() as session:
                    audit_now(session, entry)
                written += 1
            except Exception:
                log.exception("could not write an audit entry (%s by %s); dropped", entry.action, entry.actor)
        return written

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="ecr-audit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
