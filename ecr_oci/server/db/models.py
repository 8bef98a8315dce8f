"""The index schema: SQLAlchemy 2.0 typed models (docs/service.md, "Index schema").

    >>> sorted(Base.metadata.tables)[:3]
    ['event', 'layer', 'manifest']

Everything here except what issue 5 adds (users, rules, audit) is a cache of the registry: a
reconcile pass can rebuild it. Child rows hang off their parents with ``ON DELETE CASCADE`` so that
forgetting a manifest or a version is one DELETE.

Full-text search is dialect-specific and is created by the migration (``0001_index_schema``),
not by these models:

- SQLite: the FTS5 table ``version_search(name, description, keywords, authors)`` with
  ``rowid = version.id``, kept in step with ``version`` by triggers.
- PostgreSQL: the generated column ``version.search_vector`` (``tsvector``, ``simple`` config;
  weights A name with ``/`` read as a space, B keywords, C description and authors) with a GIN
  index. It is not mapped here (SQLite has no such column); query it as
  ``sqlalchemy.literal_column("version.search_vector")``.

Both read the denormalised text columns ``version.name``, ``keywords_text`` and ``authors_text``
that the indexer writes, so the FTS setup needs no JSON functions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "FTS_TABLE",
    "Base",
    "Event",
    "Layer",
    "ManifestRow",
    "PendingEvent",
    "Platform",
    "ProfileFigures",
    "ProfileMetric",
    "ProfileRun",
    "ProfileSummary",
    "Repository",
    "Signature",
    "Tag",
    "Version",
    "VersionKeyword",
    "VersionRequirement",
    "aware",
    "utcnow",
]

#: JSON on SQLite, JSONB on PostgreSQL (indexable, compact).
JsonType = JSON().with_variant(JSONB(), "postgresql")
#: ``sha256:<64 hex>`` and room for longer algorithms.
DIGEST_LEN = 150


#: The SQLite FTS5 table (rowid = version.id); PostgreSQL has ``version.search_vector`` instead.
FTS_TABLE = "version_search"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(when: datetime | None) -> datetime | None:
    """A stored time with UTC attached when naive: SQLite gives naive datetimes back, and every
    time is stored as UTC (PostgreSQL gives aware ones, returned as they are)."""
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


class Base(DeclarativeBase):
    pass


class Repository(Base):
    """One registry repository, ``namespace/name`` (the bundle's identity)."""

    __tablename__ = "repository"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    namespace: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[Version]] = relationship(
        back_populates="repository", cascade="all, delete-orphan", passive_deletes=True
    )


class ManifestRow(Base):
    """Every manifest the index fetched; referrers are the rows with a ``subject_digest``.

    ``kind``: ``image``, ``index``, ``bundle``, ``signature`` (cosign ``.sig``), ``attestation``
    (``.att``), ``sigstore-bundle``, ``profile``, ``fallback-index`` (the referrers tag-schema index
    ``sha256-<hex>``), ``other``.
    """

    __tablename__ = "manifest"
    __table_args__ = (
        UniqueConstraint("repository_id", "digest", name="uq_manifest_repository_digest"),
        Index("ix_manifest_subject", "repository_id", "subject_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    media_type: Mapped[str] = mapped_column(String(255))
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    subject_digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN))
    size: Mapped[int] = mapped_column(BigInteger)
    config_digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN))
    annotations: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    #: What building a version needs from this manifest, so that linking works from either side
    #: without fetching again: ``image``/``index``: ``{"platforms": [...], "base_layers": [...]}``;
    #: ``bundle``: ``{"config": <the bundle config JSON>}``; else ``{}``.
    details: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Tag(Base):
    """A tag and the digest it points at now (tag moves update ``digest``)."""

    __tablename__ = "tag"
    __table_args__ = (
        UniqueConstraint("repository_id", "name", name="uq_tag_repository_name"),
        Index("ix_tag_digest", "repository_id", "digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Version(Base):
    """One version tag (semver) pointing at a runnable image, with its bundle's metadata.

    The metadata columns stay empty (``bundle_digest`` null) until the bundle manifest is indexed:
    an image pushed by another tool is still a version, just one without ecr-oci metadata.
    """

    __tablename__ = "version"
    __table_args__ = (
        UniqueConstraint("repository_id", "tag", name="uq_version_repository_tag"),
        Index("ix_version_image", "repository_id", "image_digest"),
        # the signed_by filter's join from signatures, index-only with the created/id sort key
        Index("ix_version_image_created", "repository_id", "image_digest", "created", "id"),
        Index("ix_version_created", "created", "id"),
        Index("ix_version_name", "name", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    #: The repository name ``namespace/name`` and its namespace, copied for search and sort.
    name: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255), index=True)
    tag: Mapped[str] = mapped_column(String(128))
    image_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    image_media_type: Mapped[str] = mapped_column(String(255))
    bundle_digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN))
    description: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(String(255), index=True)
    keywords: Mapped[list[str]] = mapped_column(JsonType, default=list)
    authors: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    requirements: Mapped[list[str]] = mapped_column(JsonType, default=list)
    #: ``keywords`` and author names joined by spaces: what full-text search reads.
    keywords_text: Mapped[str] = mapped_column(Text, default="")
    authors_text: Mapped[str] = mapped_column(Text, default="")
    homepage: Mapped[str | None] = mapped_column(String(2048))
    source_url: Mapped[str | None] = mapped_column(String(2048))
    source_commit: Mapped[str | None] = mapped_column(String(64))
    #: Bytes of the bundle layers plus the base image's layers (first platform).
    total_size: Mapped[int | None] = mapped_column(BigInteger)
    #: RFC 3339 build time from the bundle config (sorts as text).
    created: Mapped[str | None] = mapped_column(String(40))
    config: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    repository: Mapped[Repository] = relationship(back_populates="versions")
    platforms: Mapped[list[Platform]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Platform.id"
    )
    layers: Mapped[list[Layer]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Layer.id"
    )
    keyword_rows: Mapped[list[VersionKeyword]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    requirement_rows: Mapped[list[VersionRequirement]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class Platform(Base):
    """A platform the version runs on (one per image-index entry; one for a single image)."""

    __tablename__ = "platform"
    __table_args__ = (
        Index("ix_platform_os_arch", "os", "architecture", "variant"),
        # the platform filter's EXISTS per version, index-only
        Index("ix_platform_version_os_arch", "version_id", "os", "architecture", "variant"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("version.id", ondelete="CASCADE"), index=True)
    os: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))


class Layer(Base):
    """A layer of a version: ``role`` ``code``/``model``/``data``/``profile`` (bundle) or ``base``."""

    __tablename__ = "layer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("version.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    size: Mapped[int] = mapped_column(BigInteger)


class VersionKeyword(Base):
    """One keyword of a version (lower case): an exact, indexable keyword filter on both databases."""

    __tablename__ = "version_keyword"
    __table_args__ = (Index("ix_version_keyword", "keyword", "version_id"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("version.id", ondelete="CASCADE"), primary_key=True)
    keyword: Mapped[str] = mapped_column(String(255), primary_key=True)


class VersionRequirement(Base):
    """One runtime requirement: ``name`` (lower case, ``pytorch``) and the whole ``spec``
    (``pytorch>=2.0``), so ``--requirement pytorch`` is an indexed equality."""

    __tablename__ = "version_requirement"
    __table_args__ = (Index("ix_version_requirement", "name", "version_id"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("version.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    spec: Mapped[str] = mapped_column(String(512))


class Signature(Base):
    """A signature or attestation about ``subject_digest``, found in manifest ``manifest_id``.

    ``kind``: ``cosign`` (a ``.sig`` layer), ``attestation`` (a ``.att`` layer), ``sigstore-bundle``
    (a referrer). ``key_fingerprint`` is the hex SHA-256 of the signer's PKIX DER public key when the
    signature names its key (sigstore bundle hint, certificate); a classic cosign signature made
    with a key does not, so it is null there. The index records claims; ``ecr-oci verify`` checks
    them against a trust store. ``predicate_type`` is ``""`` for plain signatures.
    """

    __tablename__ = "signature"
    __table_args__ = (
        UniqueConstraint("manifest_id", "layer_digest", name="uq_signature_manifest_layer"),
        Index("ix_signature_subject", "repository_id", "subject_digest"),
        # signed_by: the key's subjects, index-only
        Index("ix_signature_key_subject", "key_fingerprint", "repository_id", "subject_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifest.id", ondelete="CASCADE"), index=True)
    subject_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    manifest_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    layer_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    kind: Mapped[str] = mapped_column(String(32))
    predicate_type: Mapped[str] = mapped_column(String(512), default="")
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))


class Event(Base):
    """One registry notification event (activity): push, pull, delete, mount.

    ``event_id`` is the registry's id: the registry retries deliveries, and a duplicate is ignored.
    Not rebuilt by reconcile (the registry keeps no history); not needed to rebuild the index.
    """

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_repository_time", "repository", "timestamp"),
        Index("ix_event_pull_digest", "repository", "action", "digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    action: Mapped[str] = mapped_column(String(16))
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN))
    tag: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str | None] = mapped_column(String(255))
    source_addr: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingEvent(Base):
    """A manifest push or delete accepted by ``POST /events`` and not yet indexed (the durable
    queue, docs/service.md "Events → index"). ``payload`` is the event as JSON; the indexing
    worker deletes the row in the transaction that applies it, so a crash leaves it to the next
    start. A cache like the rest: reconcile converges without it."""

    __tablename__ = "pending_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# -- performance profiles (issue 6, docs/service.md "Performance profiles") ----------------------------


class ProfileFigures:
    """The measured figures a run has and a summary aggregates (absent = not measured)."""

    wall_s: Mapped[float | None] = mapped_column(Float)
    cpu_s: Mapped[float | None] = mapped_column(Float)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    gpu_util_percent_peak: Mapped[float | None] = mapped_column(Float)
    gpu_memory_peak_bytes: Mapped[int | None] = mapped_column(BigInteger)
    exit_status: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class ProfileRun(ProfileFigures, Base):
    """One measured profile: a ``profile`` manifest (a referrer of a platform manifest) and the
    figures of its profile layer. Goes with its manifest (cascade).

    No version id: versions are rebuilt when their tag, image or bundle changes, while a profile is
    about a platform manifest; the versions it belongs to are those with a :class:`Platform` whose
    ``digest`` is ``subject_digest`` (a single-image version's one platform has the image's digest).
    ``metrics``: ``{name: {"p50", "p95", "p99", "count"}}`` as the plugin reported them.
    """

    __tablename__ = "profile_run"
    __table_args__ = (Index("ix_profile_run_subject", "repository_id", "subject_digest", "device"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifest.id", ondelete="CASCADE"), unique=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    subject_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    manifest_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    device: Mapped[str] = mapped_column(String(255))
    arch: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[str | None] = mapped_column(String(40))


class ProfileSummary(ProfileFigures, Base):
    """The runs of one device on one platform manifest, aggregated: what search filters and sorts.

    Figures are the median across runs (``services.profiles.aggregate``); ``exit_status`` and
    ``latest`` (the figures of the newest run) come from the newest run. Derived from
    :class:`ProfileRun` rows alone and rewritten whenever they change.
    """

    __tablename__ = "profile_summary"
    __table_args__ = (
        UniqueConstraint(
            "repository_id", "subject_digest", "device", name="uq_profile_summary_subject_device"
        ),
        # the device filter's walk from a device to its subjects
        Index("ix_profile_summary_device", "device", "repository_id", "subject_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"))
    subject_digest: Mapped[str] = mapped_column(String(DIGEST_LEN))
    device: Mapped[str] = mapped_column(String(255))
    arch: Mapped[str | None] = mapped_column(String(64))
    runs: Mapped[int] = mapped_column(Integer)
    latest_created: Mapped[str | None] = mapped_column(String(40))
    latest: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class ProfileMetric(Base):
    """One plugin metric of a :class:`ProfileSummary` (medians across runs), as columns so that
    ``max_metric`` and ``sort=metric:…`` are plain indexed comparisons on both databases."""

    __tablename__ = "profile_metric"
    __table_args__ = (Index("ix_profile_metric_name", "metric", "summary_id"),)

    summary_id: Mapped[int] = mapped_column(
        ForeignKey("profile_summary.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(128), primary_key=True)
    p50: Mapped[float | None] = mapped_column(Float)
    p95: Mapped[float | None] = mapped_column(Float)
    p99: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int | None] = mapped_column(Integer)


#: profiles → versions: the platform rows of a profile's subject (migration 0005)
Index("ix_platform_digest", Platform.digest, Platform.version_id)
