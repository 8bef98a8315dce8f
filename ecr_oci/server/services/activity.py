"""Activity: the pushes, pulls and deletes the registry reported, and pull counts per version.

    >>> envelope = NotificationEnvelope.model_validate({"events": [{"id": "e1", "action": "pull",
    ...     "timestamp": "2024-05-01T10:00:00.123456789Z",
    ...     "target": {"repository": "waggle/x", "digest": "sha256:" + "a" * 64,
    ...                "mediaType": "application/vnd.oci.image.manifest.v1+json"},
    ...     "request": {"method": "GET", "useragent": "containerd/1.7"}}]})
    >>> [e.counts_as_activity() for e in envelope.events]
    [True]

Only manifest events are kept (a pull is one manifest GET, not one event per layer), HEAD
requests are not pulls (distribution reports them as pulls too, REFERENCE.md), and the service's
own reads (User-Agent :data:`SERVICE_USER_AGENT`) are not anybody's pulls. Event ids are unique:
the registry redelivers until it gets a 2xx, and a duplicate is ignored. Each kept event is also an
``audit_record`` (who — the registry token's subject —, what, when, from where), so the admins'
audit query shows pushes and pulls next to logins and rule changes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ecr_oci.mediatypes import MANIFEST_ACCEPT
from ecr_oci.server.db.accounts import AuditRecord
from ecr_oci.server.db.models import Event, Repository, Version
from ecr_oci.server.services.audit import AuditEntry

__all__ = [
    "SERVICE_USER_AGENT",
    "NotificationEnvelope",
    "NotificationEvent",
    "pull_counts",
    "recent_events",
    "record_events",
]

#: The User-Agent of the service's registry client, so its own fetches are not counted as pulls.
SERVICE_USER_AGENT = "ecr-oci-service"
MANIFEST_TYPES = frozenset(t.strip() for t in MANIFEST_ACCEPT.split(","))
_FRACTION = re.compile(r"(\.\d{6})\d+")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Target(_Loose):
    mediaType: str | None = Field(default=None, max_length=255)
    size: int | None = None
    digest: str | None = Field(default=None, max_length=150)
    repository: str = Field(min_length=1, max_length=255)
    tag: str | None = Field(default=None, max_length=255)


class RequestInfo(_Loose):
    addr: str | None = Field(default=None, max_length=255)
    method: str | None = Field(default=None, max_length=16)
    useragent: str | None = Field(default=None, max_length=2048)


class Actor(_Loose):
    name: str | None = Field(default=None, max_length=255)


class NotificationEvent(_Loose):
    """One event of distribution's notification envelope (the fields we use)."""

    id: str = Field(min_length=1, max_length=128)
    timestamp: datetime | None = None
    action: str = Field(min_length=1, max_length=16)
    target: Target
    request: RequestInfo = Field(default_factory=RequestInfo)
    actor: Actor = Field(default_factory=Actor)

    @property
    def is_manifest(self) -> bool:
        return self.target.mediaType in MANIFEST_TYPES

    def counts_as_activity(self) -> bool:
        if self.action not in ("push", "pull", "delete"):
            return False
        if self.action == "delete":
            return True
        if not self.is_manifest:
            return False
        if self.action == "pull" and (self.request.method or "GET").upper() == "HEAD":
            return False
        return not (self.request.useragent or "").startswith(SERVICE_USER_AGENT)


class NotificationEnvelope(_Loose):
    """``{"events": [...]}`` as the registry POSTs it."""

    events: list[NotificationEvent] = Field(max_length=10_000)


def _timestamp(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def normalise_timestamps(body: Any) -> Any:
    """Go writes nanoseconds; Python parses at most microseconds: cut the extra digits."""
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        for event in body["events"]:
            if isinstance(event, dict) and isinstance(event.get("timestamp"), str):
                event["timestamp"] = _FRACTION.sub(r"\1", event["timestamp"])
    return body


def _insert(session: Session, table: Any) -> Any:
    """``INSERT`` for ``table`` in the session's dialect (``ON CONFLICT`` is dialect syntax)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def record_events(session: Session, events: list[NotificationEvent]) -> set[str]:
    """Keep the events that count as activity; returns the ids of those that were new (a
    redelivered or duplicate event is skipped).

    Why Core and ``ON CONFLICT DO NOTHING`` (no ORM objects, no savepoint per event): this runs
    for every batch of the indexing worker (``notifications._write``), and the ORM's unit of work
    plus a savepoint per event cost ~0.5 ms of CPU per event (docs/service.md, "Events → index").
    The unique ``event_id`` still decides: a redelivery, or a concurrent delivery of the same
    event, inserts nothing, and only the events that were inserted (``RETURNING``) get their audit
    record.
    """
    kept: dict[str, NotificationEvent] = {}
    for event in events:
        if event.counts_as_activity():
            kept.setdefault(event.id, event)
    if not kept:
        return set()
    rows: list[dict[str, Any]] = [
        {
            "event_id": event.id,
            "action": event.action,
            "repository": event.target.repository,
            "digest": event.target.digest,
            "tag": event.target.tag,
            "media_type": event.target.mediaType,
            "actor": event.actor.name,
            "source_addr": event.request.addr,
            "user_agent": (event.request.useragent or "")[:512] or None,
            "timestamp": _timestamp(event.timestamp),
        }
        for event in kept.values()
    ]
    statement = _insert(session, Event.__table__).on_conflict_do_nothing(index_elements=["event_id"])
    new = set(session.scalars(statement.returning(Event.event_id), rows))
    if not new:
        return new
    audits = [
        AuditEntry(
            actor=row["actor"],
            action=row["action"],
            target=row["repository"] + (f":{row['tag']}" if row["tag"] else f"@{row['digest'] or ''}"),
            source_addr=row["source_addr"],
            detail={"user_agent": row["user_agent"]} if row["user_agent"] else {},
            time=row["timestamp"],
        ).row()
        for row in rows
        if row["event_id"] in new
    ]
    session.execute(insert(cast(Table, AuditRecord.__table__)), audits)
    return new


def pull_counts(session: Session, repository: str) -> dict[str, int]:
    """Pulls per version tag: manifest GETs of the version's image (by tag or by digest)."""
    versions = session.execute(
        select(Version.tag, Version.image_digest).join(Repository).where(Repository.name == repository)
    ).all()
    if not versions:
        return {}
    by_digest = dict(
        session.execute(
            select(Event.digest, func.count())
            .where(
                Event.repository == repository,
                Event.action == "pull",
                Event.digest.in_([v.image_digest for v in versions]),
            )
            .group_by(Event.digest)
        ).all()
    )
    return {v.tag: int(by_digest.get(v.image_digest, 0)) for v in versions}


def recent_events(session: Session, repository: str, *, limit: int = 50) -> list[Event]:
    """The newest events of ``repository``, newest first."""
    return list(
        session.scalars(
            select(Event)
            .where(Event.repository == repository)
            .order_by(Event.timestamp.desc(), Event.id.desc())
            .limit(limit)
        )
    )
