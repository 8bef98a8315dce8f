"""Accounts and access rules (issue 5; docs/access.md): the part of the database that is *not* a
cache of the registry — reconcile never touches it, and a backup of the service is a backup of
these tables.

    >>> sorted(t for t in Base.metadata.tables if t in ACCOUNT_TABLES)[:3]
    ['access_grant', 'api_token', 'audit_record']

- :class:`Principal`: who can authenticate — a ``user`` (password, hashed with argon2, and API
  tokens), a ``robot`` (CI: API tokens only, limited to :class:`RobotScope` namespaces, optional
  expiry) or a ``node`` (a Waggle node: API tokens, or assertions signed by its own key).
- :class:`ApiToken`: ``ecr_<id>_<secret>``; only the SHA-256 of the secret is stored (a 256-bit
  random secret needs no slow hash, and the token endpoint must answer thousands per second).
- :class:`Team` and :class:`TeamMember`.
- :class:`NamespaceRow`: an owner (admin on everything in it) and the default visibility of its
  bundles; :class:`BundleVisibility` overrides it for one repository.
- :class:`AccessGrant`: ``pull`` < ``push`` < ``admin`` for a principal or a team, on a whole
  namespace (``repository`` null) or one repository.
- :class:`AuditRecord`: logins, tokens issued, rule changes, pushes and pulls.
- :class:`RulesVersion`: one row bumped by every rule change, so each replica knows when its cached
  snapshot of the rules (``services.access.RuleCache``) is stale with one tiny query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ecr_oci.server.db.models import Base, JsonType, utcnow

__all__ = [
    "ACCOUNT_TABLES",
    "AccessGrant",
    "ApiToken",
    "AuditRecord",
    "BundleVisibility",
    "NamespaceRow",
    "Principal",
    "RobotScope",
    "RulesVersion",
    "Team",
    "TeamMember",
]


class Principal(Base):
    __tablename__ = "principal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: ``user`` | ``robot`` | ``node``
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128), unique=True)
    #: argon2 hash (users only); robots and nodes authenticate with tokens.
    password_hash: Mapped[str | None] = mapped_column(Text)
    #: Nodes only, optional: the PEM public key (EC P-256 or Ed25519) whose signed assertions the
    #: node may log in with instead of an API token (services/credentials.py).
    public_key: Mapped[str | None] = mapped_column(Text)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When the principal stops working (robots); null: never.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    description: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("principal.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    #: Hex SHA-256 of the token's secret part.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Team(Base):
    __tablename__ = "team"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TeamMember(Base):
    __tablename__ = "team_member"

    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("principal.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class RobotScope(Base):
    """A namespace a robot may act in; its grants outside these namespaces count for nothing."""

    __tablename__ = "robot_scope"

    principal_id: Mapped[int] = mapped_column(
        ForeignKey("principal.id", ondelete="CASCADE"), primary_key=True
    )
    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)


class NamespaceRow(Base):
    __tablename__ = "namespace"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("principal.id", ondelete="SET NULL"))
    #: ``public`` | ``private``: the default of the bundles in it.
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    description: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BundleVisibility(Base):
    """A per-bundle override of its namespace's default visibility."""

    __tablename__ = "bundle_visibility"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"), index=True)
    #: The repository ``namespace/name``.
    repository: Mapped[str] = mapped_column(String(255), unique=True)
    visibility: Mapped[str] = mapped_column(String(16))


class AccessGrant(Base):
    """``action`` for a principal *or* a team on a namespace, or on one repository of it."""

    __tablename__ = "access_grant"
    __table_args__ = (
        UniqueConstraint(
            "namespace_id", "repository", "principal_id", "team_id", name="uq_grant_target_subject"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"), index=True)
    #: ``namespace/name``; empty string: the whole namespace (not null, so that the unique
    #: constraint holds: SQL treats nulls as distinct).
    repository: Mapped[str] = mapped_column(String(255), default="")
    principal_id: Mapped[int | None] = mapped_column(ForeignKey("principal.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    #: ``pull`` | ``push`` | ``admin``
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRecord(Base):
    __tablename__ = "audit_record"
    __table_args__ = (Index("ix_audit_time", "time", "id"), Index("ix_audit_action_time", "action", "time"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The principal's name; null for anonymous.
    actor: Mapped[str | None] = mapped_column(String(128))
    #: ``login``, ``token``, ``grant.add`` …, ``push``, ``pull``.
    action: Mapped[str] = mapped_column(String(64))
    #: ``ok`` | ``denied`` | ``failed``
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    target: Mapped[str | None] = mapped_column(String(512))
    source_addr: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class RulesVersion(Base):
    __tablename__ = "rules_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


ACCOUNT_TABLES = frozenset(
    {
        "principal",
        "api_token",
        "team",
        "team_member",
        "robot_scope",
        "namespace",
        "bundle_visibility",
        "access_grant",
        "audit_record",
        "rules_version",
    }
)
