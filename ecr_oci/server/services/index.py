"""The indexer: fetch a manifest from the registry, classify it, and upsert what it says.

    >>> classify("application/vnd.oci.image.manifest.v1+json",
    ...          {"artifactType": "application/vnd.waggle.ecr.bundle.v1",
    ...           "config": {"mediaType": "application/vnd.waggle.ecr.bundle.config.v1+json"}},
    ...          tag=None).kind
    'bundle'

Two phases, so that no database transaction waits on the network: :meth:`Indexer.fetch` reads
the registry (manifest, and the small blobs a manifest's meaning depends on: an image's config, a
bundle's config, a sigstore bundle) into a :class:`FetchedManifest`; :meth:`Indexer.store` writes
it. Each manifest row keeps in ``details`` what building a version needs, so a version is derived
from rows alone (:func:`sync_versions`) whichever of image, tag and bundle arrived first.

:meth:`Indexer.store_many` writes a batch set-based (a few Core statements per table, whatever
its size); :meth:`Indexer.store` is a batch of one, so there is one way to write.

Every write is an upsert keyed by (repository, digest) or (repository, tag): the same event twice,
or events out of order, converge to the same rows. A push event re-reads the tag's current target
(a GET by tag) instead of trusting the event, so a late event for a tag that moved since indexes the
present, not the past.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from sqlalchemy import Table, bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from ecr_oci.bundle.config import ROLE_ANNOTATION, BundleConfig
from ecr_oci.bundle.spec import _SEMVER_RE  # the one semver rule ecr.yaml versions follow
from ecr_oci.digest import Digest
from ecr_oci.errors import NotFound, RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import RawManifest, embedded_content
from ecr_oci.oci.reads import MetadataReads
from ecr_oci.oci.referrers import subject_of_tag
from ecr_oci.server.db.models import (
    Layer,
    ManifestRow,
    Platform,
    Repository,
    Signature,
    Tag,
    Version,
    VersionKeyword,
    VersionRequirement,
    utcnow,
)
from ecr_oci.server.services.profiles import (
    declared_profile_details,
    profile_details,
    refresh_summaries,
    sync_profile,
)
from ecr_oci.signing.attest import PREDICATE_TYPE_ANNOTATION
from ecr_oci.signing.sigstore_bundle import BUNDLE_MEDIA_TYPE as SIGSTORE_BUNDLE_MEDIA_TYPE
from ecr_oci.signing.store import SIMPLESIGNING_MEDIA_TYPE

__all__ = [
    "KINDS",
    "BlobCache",
    "Classified",
    "FetchedManifest",
    "Indexer",
    "SignatureClaim",
    "classify",
    "is_version_tag",
    "lock_repository",
    "requirement_name",
    "sync_versions",
]

log = logging.getLogger("ecr_oci.server.index")

KINDS = (
    "image",
    "index",
    "bundle",
    "signature",
    "attestation",
    "sigstore-bundle",
    "profile",
    "fallback-index",
    "other",
)
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
#: Kinds whose only anchor is a tag (``.sig``, ``.att``, ``sha256-<hex>``): forgotten when it moves.
TAG_ANCHORED = frozenset({"signature", "attestation", "fallback-index"})
IMAGE_KINDS = frozenset({"image", "index"})
#: Kinds whose manifest rows have side rows (signatures, a profile run) to write when stored.
_SIDE_ROW_KINDS = frozenset({"signature", "attestation", "sigstore-bundle", "profile"})
#: The tables the set-based writes address with Core statements (no ORM objects on the hot path).
_REPOSITORIES = cast(Table, Repository.__table__)
_MANIFESTS = cast(Table, ManifestRow.__table__)
_TAGS = cast(Table, Tag.__table__)
_VERSIONS = cast(Table, Version.__table__)
_PLATFORMS = cast(Table, Platform.__table__)
_LAYERS = cast(Table, Layer.__table__)
_KEYWORDS = cast(Table, VersionKeyword.__table__)
_REQUIREMENTS = cast(Table, VersionRequirement.__table__)
_IMAGE_CONFIGS = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: Small blobs read to classify (image config, bundle config, sigstore bundle): bigger is hostile.
MAX_METADATA_BLOB = 1 << 20


def is_version_tag(tag: str) -> bool:
    """Whether ``tag`` names a version (semver, as ``ecr-oci push`` tags them).

    >>> is_version_tag("0.1.0"), is_version_tag("latest"), is_version_tag("sha256-ab.sig")
    (True, False, False)
    """
    return bool(_SEMVER_RE.match(tag))


def requirement_name(requirement: str) -> str:
    """The package name of a runtime requirement, lower case: ``pytorch>=2.0`` → ``pytorch``.

    >>> requirement_name("PyTorch >= 2.0"), requirement_name("busybox>=1.36")
    ('pytorch', 'busybox')
    """
    found = _REQUIREMENT_NAME.match(requirement)
    return (found.group(1) if found else requirement.strip()).lower()


def tag_subject(tag: str | None) -> tuple[str, str] | None:
    """``(subject digest, suffix)`` for the tag-schema tags: ``sha256-<hex>[.sig|.att|.<32 hex>]``.

    >>> tag_subject("sha256-" + "a" * 64 + ".sig") == ("sha256:" + "a" * 64, "sig")
    True
    >>> tag_subject("0.1.0") is None
    True
    """
    found = subject_of_tag(tag) if tag is not None else None
    return (str(found[0]), found[1]) if found is not None else None


@dataclass(frozen=True)
class Classified:
    """What a manifest is, from its JSON (and its tag for the cosign tag scheme)."""

    kind: str
    artifact_type: str | None
    subject_digest: str | None
    config_digest: str | None
    annotations: dict[str, str]


def classify(media_type: str, document: dict[str, Any], tag: str | None) -> Classified:
    """Classify a manifest: pure, from its media type, its JSON and the tag it was pushed under.

    Order matters: ``artifactType`` (or the config media type, OCI 1.1's fallback) names ours and
    sigstore's artifacts; the ``.sig``/``.att`` tag or the layers' media types name cosign's; an
    index tagged ``sha256-<hex>`` is the referrers fallback index; an image config makes an image.
    """
    config = document.get("config") if isinstance(document.get("config"), dict) else {}
    assert isinstance(config, dict)
    config_type = str(config.get("mediaType") or "")
    artifact = document.get("artifactType")
    artifact_type = str(artifact) if isinstance(artifact, str) else None
    effective = artifact_type or config_type
    subject = document.get("subject")
    subject_digest = str(subject["digest"]) if isinstance(subject, dict) and "digest" in subject else None
    raw_annotations = document.get("annotations")
    annotations = (
        {str(k): str(v) for k, v in raw_annotations.items()} if isinstance(raw_annotations, dict) else {}
    )
    config_digest = str(config["digest"]) if "digest" in config else None
    layers = document.get("layers") if isinstance(document.get("layers"), list) else []
    assert isinstance(layers, list)
    layer_types = {str(layer.get("mediaType")) for layer in layers if isinstance(layer, dict)}
    from_tag = tag_subject(tag)
    is_index = media_type in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST) or (
        "manifests" in document and "layers" not in document
    )

    def made(kind: str, subject_value: str | None = subject_digest) -> Classified:
        return Classified(kind, artifact_type, subject_value, config_digest, annotations)

    if effective == MediaType.BUNDLE or config_type == MediaType.BUNDLE_CONFIG:
        return made("bundle")
    if effective == MediaType.PROFILE:
        return made("profile")
    if effective == SIGSTORE_BUNDLE_MEDIA_TYPE:
        return made("sigstore-bundle")
    if from_tag is not None and from_tag[1] in ("sig", "att") and not is_index:
        return made("signature" if from_tag[1] == "sig" else "attestation", subject_digest or from_tag[0])
    if not is_index and layer_types and layer_types <= {SIMPLESIGNING_MEDIA_TYPE}:
        return made("signature")
    if not is_index and layer_types and layer_types <= {MediaType.DSSE_ENVELOPE}:
        return made("attestation")
    if is_index:
        if from_tag is not None and from_tag[1] == "":
            return made("fallback-index", None)
        return made("index")
    if config_type in _IMAGE_CONFIGS:
        return made("image")
    return made("other")


@dataclass(frozen=True)
class SignatureClaim:
    """One signature/attestation layer: which blob, what kind, which predicate, which key."""

    layer_digest: str
    kind: str
    predicate_type: str = ""
    key_fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "layer_digest": self.layer_digest,
            "kind": self.kind,
            "predicate_type": self.predicate_type,
            "key_fingerprint": self.key_fingerprint,
        }


class BlobCache:
    """A bounded LRU of small content-addressed bytes (metadata blobs, child manifests), keyed by
    ``(repository, digest)``: immutable by digest, verified when fetched, so never stale. Keyed
    per repository so that a hit never vouches for content another repository lacks. Thread-safe
    (the service handles notifications in a thread pool)."""

    def __init__(self, max_entries: int = 1024, max_item: int = 64 << 10) -> None:
        self.max_entries = max_entries
        self.max_item = max_item
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple[str, str], data: bytes) -> None:
        if len(data) > self.max_item:
            return
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as fetched, classified, with the details its rows need."""

    repository: str
    digest: str
    media_type: str
    size: int
    classified: Classified
    details: dict[str, Any] = field(default_factory=dict)


class Indexer:
    """Index manifests and tags of one registry into the database.

    ``reads`` is where manifests and metadata blobs are read (a registry client, or the indexing
    worker's lean reader); the write methods take the caller's session. Reads raise
    :class:`~ecr_oci.errors.RegistryError` when the registry fails (callers decide: the
    notification handler logs and leaves it for reconcile).
    """

    def __init__(self, reads: MetadataReads, *, cache: BlobCache | None = None) -> None:
        self.reads = reads
        self.cache = cache if cache is not None else BlobCache()

    # -- registry side --------------------------------------------------------------------------

    def fetch(
        self, repository: str, digest: Digest, *, tag: str | None = None, raw: RawManifest | None = None
    ) -> FetchedManifest | None:
        """The manifest ``repository@digest`` classified, or ``None`` when the registry lacks it.

        ``raw``: the manifest when the caller already has it (read by tag: :meth:`current_manifest`),
        so that it is not fetched twice.
        """
        try:
            if raw is None or raw.digest != digest:
                raw = self.reads.get_manifest(repository, digest)
            document = raw.json()
        except NotFound:
            return None
        except ValueError:
            document = {}
            raw = RawManifest("", digest, b"")
        classified = classify(raw.media_type, document, tag)
        details: dict[str, Any] = {}
        try:
            details = self._details(repository, raw, document, classified)
        except NotFound:
            return None
        except (RegistryError, ValueError, ValidationError) as err:
            if isinstance(err, RegistryError) and err.status is None:
                raise  # the registry is unreachable: not this manifest's fault
            # a malformed blob is the content's problem: index the manifest without details
            log.warning("%s@%s: details unreadable (%s); indexed without them", repository, digest, err)
        return FetchedManifest(repository, str(digest), raw.media_type, len(raw.data), classified, details)

    def _details(
        self, repository: str, raw: RawManifest, document: dict[str, Any], classified: Classified
    ) -> dict[str, Any]:
        kind = classified.kind
        if kind == "image":
            return self._image_details(repository, document)
        if kind == "index":
            platforms = []
            for entry in document.get("manifests") or []:
                platform = entry.get("platform") or {}
                if platform.get("os") in (None, "unknown"):
                    continue  # buildkit's attestation manifests, not a runnable platform
                platforms.append(
                    {
                        "os": platform.get("os"),
                        "architecture": platform.get("architecture"),
                        "variant": platform.get("variant"),
                        "digest": entry.get("digest"),
                    }
                )
            base_layers: list[dict[str, Any]] = []
            if platforms:
                child = self._small(repository, Digest.parse(str(platforms[0]["digest"])), manifest=True)
                base_layers = _image_layers(json.loads(child))
            return {"platforms": platforms, "base_layers": base_layers}
        if kind == "bundle" and classified.config_digest:
            data = self._config(repository, document["config"])
            config = BundleConfig.model_validate_json(data)  # only valid configs feed versions
            dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
            return {"config": dumped, **declared_profile_details(repository, dumped, self._blob(repository))}
        if kind == "profile":  # issue 6: its figures, read now so that storing needs no network
            return profile_details(repository, document, self._blob(repository))
        if kind in ("signature", "attestation"):
            claims = []
            for layer in document.get("layers") or []:
                annotations = layer.get("annotations") or {}
                claims.append(
                    SignatureClaim(
                        layer_digest=str(layer.get("digest")),
                        kind="cosign" if kind == "signature" else "attestation",
                        predicate_type=str(annotations.get(PREDICATE_TYPE_ANNOTATION) or ""),
                        key_fingerprint=_certificate_fingerprint(annotations.get(CERTIFICATE_ANNOTATION)),
                    ).to_json()
                )
            return {"signatures": claims}
        if kind == "sigstore-bundle":
            claims = []
            for layer in (document.get("layers") or [])[:4]:
                if int(layer.get("size") or 0) > MAX_METADATA_BLOB:
                    continue
                data = self.reads.get_blob(
                    repository, Digest.parse(str(layer["digest"])), max_size=MAX_METADATA_BLOB
                )
                claims.append(
                    SignatureClaim(
                        layer_digest=str(layer["digest"]),
                        kind="sigstore-bundle",
                        predicate_type=classified.annotations.get(BUNDLE_PREDICATE_ANNOTATION, ""),
                        key_fingerprint=_bundle_key_fingerprint(data),
                    ).to_json()
                )
            return {"signatures": claims}
        return {}

    def _image_details(self, repository: str, document: dict[str, Any]) -> dict[str, Any]:
        config = document.get("config") or {}
        platform: dict[str, Any] = {"os": None, "architecture": None, "variant": None, "digest": None}
        if config.get("digest"):
            data = self._config(repository, config)
            image_config = json.loads(data)
            if isinstance(image_config, dict):
                platform.update(
                    os=image_config.get("os"),
                    architecture=image_config.get("architecture"),
                    variant=image_config.get("variant"),
                )
        return {"platforms": [platform], "base_layers": _image_layers(document)}

    def current_manifest(self, repository: str, tag: str) -> RawManifest | None:
        """What ``tag`` points at now, read in one round trip (GET by tag: the digest and the
        manifest together, where HEAD then GET take two), or ``None`` when the tag is gone."""
        try:
            return self.reads.get_manifest(repository, tag)
        except NotFound:
            return None

    def _config(self, repository: str, descriptor: dict[str, Any]) -> bytes:
        """A manifest's config: its verified inline copy (OCI 1.1 ``data``: ``ecr-oci push`` embeds
        small configs, and each blob read costs the registry ~1 ms of CPU), else the blob."""
        inline = embedded_content(descriptor)
        return (
            inline if inline is not None else self._small(repository, Digest.parse(str(descriptor["digest"])))
        )

    def _blob(self, repository: str) -> Callable[[Digest], bytes]:
        return lambda digest: self._small(repository, digest)

    def _small(self, repository: str, digest: Digest, *, manifest: bool = False) -> bytes:
        """A metadata blob (or a child manifest) by digest, through :attr:`cache`: content by
        digest never changes, so a second read of it (an index after its children, the same
        config under two tags) costs no round trip."""
        key = (repository, str(digest))
        data = self.cache.get(key)
        if data is None:
            if manifest:
                data = self.reads.get_manifest(repository, digest).data
            else:
                data = self.reads.get_blob(repository, digest, max_size=MAX_METADATA_BLOB)
            self.cache.put(key, data)
        return data

    # -- database side --------------------------------------------------------------------------

    def store(self, session: Session, fetched: FetchedManifest, *, tag: str | None = None) -> None:
        """Upsert the manifest row (and ``tag`` → it), then its signatures and the versions it
        touches: :meth:`store_many` of one."""
        self.store_many(session, [(fetched, tag)])

    def store_many(
        self,
        session: Session,
        manifests: Sequence[tuple[FetchedManifest, str | None]],
        *,
        tags: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        """Upsert ``manifests`` (each with the tag, if any, that now points at it), point
        ``tags`` ((repository, tag, digest) of manifests already indexed) and rebuild the versions
        they touch — a few statements for the whole batch, not per manifest.

        Why set-based: the indexing worker writes batches of up to 100 events, and ~17 ORM
        statements per manifest cost ~2.2 ms of CPU each (docs/service.md, "Events → index").
        The result is what storing them one by one gives, provided each (repository, digest) and
        each (repository, tag) occurs once (``notifications`` splits its batches so; a repeat is
        applied as the last one). New manifest rows of kinds without signatures or a profile need
        no side rows; the others (signatures, attestations, profiles) and every manifest already
        indexed are updated and their side rows rewritten per row, through the ORM.
        """
        if not manifests and not tags:
            return
        repos = repository_rows(session, [f.repository for f, _ in manifests] + [t[0] for t in tags])
        by_key: dict[tuple[int, str], FetchedManifest] = {}
        for fetched, _ in manifests:
            by_key[(repos[fetched.repository].id, fetched.digest)] = fetched
        table = _MANIFESTS
        m = table.c
        existing: dict[tuple[int, str], Any] = {}
        if by_key:
            query = select(m.id, m.repository_id, m.digest, m.kind, m.subject_digest).where(
                tuple_(m.repository_id, m.digest).in_(list(by_key))
            )
            existing = {(r.repository_id, r.digest): r for r in session.execute(query)}
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for key, fetched in by_key.items():
            c = fetched.classified
            values = {
                "media_type": fetched.media_type,
                "artifact_type": c.artifact_type,
                "size": fetched.size,
                "config_digest": c.config_digest,
                "annotations": c.annotations,
                "kind": c.kind,
                "details": fetched.details,
                "indexed_at": now,
            }
            old = existing.get(key)
            if old is None:
                inserts.append(
                    {"repository_id": key[0], "digest": key[1], "subject_digest": c.subject_digest, **values}
                )
            else:
                # a cosign manifest indexed by digest alone learns its subject from its tag later: keep it
                subject = c.subject_digest or (old.subject_digest if old.kind == c.kind else None)
                updates.append({"row_id": old.id, "subject_digest": subject, **values})
        if inserts:
            _insert_rows(session, table, inserts)
        if updates:
            session.execute(update(table).where(table.c.id == bindparam("row_id")), updates)
        # side rows: only what can have them (a new image, index or bundle row has none)
        side = [
            key
            for key, fetched in by_key.items()
            if key in existing or fetched.classified.kind in _SIDE_ROW_KINDS
        ]
        if side:
            profiled: dict[int, set[str]] = {}
            for row in session.scalars(
                select(ManifestRow)
                .where(tuple_(ManifestRow.repository_id, ManifestRow.digest).in_(side))
                .execution_options(populate_existing=True)
            ):
                sync_signatures(session, row)
                profiled.setdefault(row.repository_id, set()).update(sync_profile(session, row))
            for repo_id, subjects in sorted(profiled.items()):  # once per repository, not per run
                refresh_summaries(session, repo_id, subjects)
        # the versions touched: tags pointing at the manifests or at a bundle's subject, and the set tags
        wanted = set(by_key)
        affected: dict[int, set[str]] = {}
        for key, fetched in by_key.items():
            if fetched.classified.kind == "bundle":
                old = existing.get(key)
                subject = fetched.classified.subject_digest or (
                    old.subject_digest if old is not None and old.kind == "bundle" else None
                )
                if subject:
                    wanted.add((key[0], subject))
        if wanted:
            for repo_id, name in session.execute(
                select(Tag.repository_id, Tag.name).where(
                    tuple_(Tag.repository_id, Tag.digest).in_(list(wanted))
                )
            ):
                affected.setdefault(repo_id, set()).add(name)
        pointers = [(repos[f.repository], tag, f.digest) for f, tag in manifests if tag is not None]
        pointers += [(repos[repository], tag, digest) for repository, tag, digest in tags]
        for repo_id, names in self.set_tags(session, pointers, sync=False).items():
            affected.setdefault(repo_id, set()).update(names)
        sync_versions_many(session, {r.id: r for r in repos.values()}, affected)

    def set_tag(
        self, session: Session, repo: Repository, tag: str, digest: str, *, sync: bool = True
    ) -> set[str]:
        """Point ``tag`` at ``digest`` (a tag move forgets what only the old tag anchored)."""
        return self.set_tags(session, [(repo, tag, digest)], sync=sync).get(repo.id, set())

    def set_tags(
        self, session: Session, pointers: Sequence[tuple[Repository, str, str]], *, sync: bool = True
    ) -> dict[int, set[str]]:
        """Point each (repository, tag) at its digest, in a few statements; returns the tags
        (by repository id) whose versions may have changed. A repeated tag: the last one wins.
        The caller holds the repositories' locks (rows from :func:`repository_rows`)."""
        if not pointers:
            return {}
        repos = {repo.id: repo for repo, _, _ in pointers}
        wanted: dict[tuple[int, str], str] = {}
        for repo, tag, digest in pointers:
            wanted.pop((repo.id, tag), None)
            wanted[(repo.id, tag)] = digest
        table = _TAGS
        current = {
            (r.repository_id, r.name): r
            for r in session.execute(
                select(table.c.id, table.c.repository_id, table.c.name, table.c.digest).where(
                    tuple_(table.c.repository_id, table.c.name).in_(list(wanted))
                )
            )
        }
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        moves: list[dict[str, Any]] = []
        moved_from: list[tuple[int, str]] = []
        affected: dict[int, set[str]] = {}
        for (repo_id, tag), digest in wanted.items():
            affected.setdefault(repo_id, set()).add(tag)
            old = current.get((repo_id, tag))
            if old is None:
                inserts.append({"repository_id": repo_id, "name": tag, "digest": digest, "updated_at": now})
            elif old.digest != digest:
                moves.append({"row_id": old.id, "digest": digest, "updated_at": now})
                moved_from.append((repo_id, old.digest))
        if inserts:
            session.execute(insert(table), inserts)
        if moves:
            session.execute(update(table).where(table.c.id == bindparam("row_id")), moves)
        for repo_id, old_digest in moved_from:
            _forget_if_tag_anchored(session, repo_id, old_digest)
        # the cosign tag schema: a .sig/.att indexed by digest alone learns its subject from its tag
        subjects: dict[tuple[int, str], str] = {}
        for (repo_id, tag), digest in wanted.items():
            found = tag_subject(tag)
            if found is not None:
                subjects[(repo_id, digest)] = found[0]
        if subjects:
            for manifest in session.scalars(
                select(ManifestRow)
                .where(
                    tuple_(ManifestRow.repository_id, ManifestRow.digest).in_(list(subjects)),
                    ManifestRow.kind.in_(("signature", "attestation")),
                    ManifestRow.subject_digest.is_(None),
                )
                .execution_options(populate_existing=True)
            ):
                manifest.subject_digest = subjects[(manifest.repository_id, manifest.digest)]
                session.flush()
                sync_signatures(session, manifest)
        if sync:
            sync_versions_many(session, repos, affected)
        return affected

    def forget_tag(self, session: Session, repository: str, tag: str) -> None:
        """The registry no longer has ``tag``."""
        lock_repository(session, repository)
        repo = find_repository(session, repository)
        if repo is None:
            return
        row = session.scalar(select(Tag).where(Tag.repository_id == repo.id, Tag.name == tag))
        if row is None:
            return
        old = row.digest
        session.delete(row)
        session.flush()
        _forget_if_tag_anchored(session, repo.id, old)
        sync_versions(session, repo, {tag})

    def forget_manifest(self, session: Session, repository: str, digest: str) -> None:
        """The registry deleted ``repository@digest``: its row, its tags (distribution deletes
        every tag of a digest) and the versions built on them go."""
        lock_repository(session, repository)
        repo = find_repository(session, repository)
        if repo is None:
            return
        tags = set(tags_pointing_at(session, repo.id, [digest]))
        row = session.scalar(
            select(ManifestRow).where(ManifestRow.repository_id == repo.id, ManifestRow.digest == digest)
        )
        subject = row.subject_digest if row is not None else None
        profile = row is not None and row.kind == "profile"
        session.execute(delete(Tag).where(Tag.repository_id == repo.id, Tag.digest == digest))
        if row is not None:
            session.delete(row)
        session.flush()
        if profile and subject:  # its run went with it (cascade): re-aggregate the rest
            refresh_summaries(session, repo.id, [subject])
        if subject:  # a bundle gone: its version falls back to the next bundle or none
            tags |= set(tags_pointing_at(session, repo.id, [subject]))
        sync_versions(session, repo, tags)


# -- rows -------------------------------------------------------------------------------------------


def lock_repository(session: Session, name: str) -> None:
    """Serialise the writers of one repository until the transaction ends (PostgreSQL).

    Why: under READ COMMITTED two writers (a notification and a reconcile pass, or two service
    replicas) can both see "no such tag" and both insert it; an advisory transaction lock keyed by
    the repository makes each read-then-write atomic, as SQLite's ``BEGIN IMMEDIATE`` does there.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def find_repository(session: Session, name: str) -> Repository | None:
    return session.scalar(select(Repository).where(Repository.name == name))


def repository_row(session: Session, name: str) -> Repository:
    """The repository row for ``name`` (locked), created when missing."""
    return repository_rows(session, [name])[name]


def repository_rows(session: Session, names: Iterable[str]) -> dict[str, Repository]:
    """The repository rows for ``names`` (each locked, see :func:`lock_repository`), the
    missing ones created: two or three statements for any number of names."""
    wanted = sorted(set(names))
    for name in wanted:  # one order for every writer: no lock-order deadlock between replicas
        lock_repository(session, name)
    found = {r.name: r for r in session.scalars(select(Repository).where(Repository.name.in_(wanted)))}
    missing = [name for name in wanted if name not in found]
    if missing:
        session.execute(
            insert(_REPOSITORIES),
            [
                {"name": n, "namespace": n.split("/", 1)[0] if "/" in n else "", "created_at": utcnow()}
                for n in missing
            ],
        )
        found.update(
            (r.name, r) for r in session.scalars(select(Repository).where(Repository.name.in_(missing)))
        )
    return found


def _insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (executemany; rows with the same keys together, so a key left out takes
    the column's default or NULL as an ORM insert would) and return their ids, in order."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(tuple(row), []).append(i)
    ids = [0] * len(rows)
    for positions in groups.values():
        result = session.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), [rows[i] for i in positions]
        )
        for i, row_id in zip(positions, result.scalars(), strict=True):
            ids[i] = row_id
    return ids


def tags_pointing_at(session: Session, repository_id: int, digests: Sequence[str]) -> list[str]:
    return list(
        session.scalars(select(Tag.name).where(Tag.repository_id == repository_id, Tag.digest.in_(digests)))
    )


def _known(session: Session, repository: str, digest: str) -> bool:
    return (
        session.scalar(
            select(ManifestRow.id)
            .join(Repository, Repository.id == ManifestRow.repository_id)
            .where(Repository.name == repository, ManifestRow.digest == digest)
        )
        is not None
    )


def _forget_if_tag_anchored(session: Session, repository_id: int, digest: str) -> None:
    """A ``.sig``/``.att``/fallback index that lost its only tag is history: forget it now
    (reconcile would too), so that signatures read from the index are the current ones."""
    if tags_pointing_at(session, repository_id, [digest]):
        return
    session.execute(
        delete(ManifestRow).where(
            ManifestRow.repository_id == repository_id,
            ManifestRow.digest == digest,
            ManifestRow.kind.in_(TAG_ANCHORED),
        )
    )


def sync_signatures(session: Session, row: ManifestRow) -> None:
    """Rewrite the signature rows of one manifest from its ``details`` (needs a subject)."""
    session.execute(delete(Signature).where(Signature.manifest_id == row.id))
    if not row.subject_digest:
        return
    seen: set[str] = set()
    for claim in row.details.get("signatures") or []:
        if claim["layer_digest"] in seen:
            continue
        seen.add(claim["layer_digest"])
        session.add(
            Signature(
                repository_id=row.repository_id,
                manifest_id=row.id,
                subject_digest=row.subject_digest,
                manifest_digest=row.digest,
                layer_digest=claim["layer_digest"],
                kind=claim["kind"],
                predicate_type=claim.get("predicate_type") or "",
                key_fingerprint=claim.get("key_fingerprint"),
            )
        )
    session.flush()


def sync_versions(session: Session, repo: Repository, tags: Iterable[str]) -> None:
    """Make the version rows of ``tags`` match the tag, image and bundle rows (pure DB work):
    :func:`sync_versions_many` for one repository."""
    sync_versions_many(session, {repo.id: repo}, {repo.id: set(tags)})


def sync_versions_many(session: Session, repos: dict[int, Repository], tags: dict[int, set[str]]) -> None:
    """Make the version rows of ``tags`` (by repository id) match the tag, image and bundle rows.

    A version exists when a semver tag points at an image or index row; its metadata comes from
    the newest bundle manifest whose subject is that image. Rewritten only when the (image,
    bundle) pair changed, so replaying events costs reads, not writes. Four reads and at most
    one delete and one insert per table for any number of tags (Core, no ORM objects).
    """
    keys = sorted(
        (repo_id, name) for repo_id, names in tags.items() for name in names if is_version_tag(name)
    )
    if not keys:
        return
    v, t, m = _VERSIONS.c, _TAGS.c, _MANIFESTS.c
    versions = {
        (r.repository_id, r.tag): r
        for r in session.execute(
            select(v.id, v.repository_id, v.tag, v.image_digest, v.bundle_digest).where(
                tuple_(v.repository_id, v.tag).in_(keys)
            )
        )
    }
    targets = {
        (r.repository_id, r.name): r.digest
        for r in session.execute(
            select(t.repository_id, t.name, t.digest).where(tuple_(t.repository_id, t.name).in_(keys))
        )
    }
    images: dict[tuple[int, str], Any] = {}
    bundles: dict[tuple[int, str], list[Any]] = {}
    pointed = sorted({(repo_id, digest) for (repo_id, _), digest in targets.items()})
    if pointed:
        images = {
            (r.repository_id, r.digest): r
            for r in session.execute(
                select(m.repository_id, m.digest, m.media_type, m.details).where(
                    tuple_(m.repository_id, m.digest).in_(pointed), m.kind.in_(IMAGE_KINDS)
                )
            )
        }
    if images:
        for r in session.execute(
            select(m.repository_id, m.subject_digest, m.digest, m.annotations, m.details).where(
                tuple_(m.repository_id, m.subject_digest).in_(sorted(images)), m.kind == "bundle"
            )
        ):
            bundles.setdefault((r.repository_id, r.subject_digest), []).append(r)
    gone: list[int] = []
    built: list[_VersionRows] = []
    for repo_id, name in keys:
        version = versions.get((repo_id, name))
        digest = targets.get((repo_id, name))
        image = images.get((repo_id, digest)) if digest is not None else None
        if image is None:
            if version is not None:
                gone.append(version.id)
            continue
        bundle = _newest_bundle(bundles.get((repo_id, image.digest), []))
        bundle_digest = bundle.digest if bundle is not None else None
        if (
            version is not None
            and version.image_digest == image.digest
            and version.bundle_digest == bundle_digest
        ):
            continue
        if version is not None:
            gone.append(version.id)  # children go with it (cascade); rebuilt below
        built.append(_build_version(repos[repo_id], name, image, bundle))
    if gone:
        session.execute(delete(_VERSIONS).where(v.id.in_(gone)))
    if not built:
        return
    ids = _insert_rows(session, _VERSIONS, [b.version for b in built])
    children: list[tuple[Table, str]] = [
        (_PLATFORMS, "platforms"),
        (_LAYERS, "layers"),
        (_KEYWORDS, "keywords"),
        (_REQUIREMENTS, "requirements"),
    ]
    for table, attribute in children:
        rows = [
            {"version_id": version_id, **row}
            for version_id, b in zip(ids, built, strict=True)
            for row in getattr(b, attribute)
        ]
        if rows:
            session.execute(insert(table), rows)


def _newest_bundle(bundles: Sequence[Any]) -> Any | None:
    """The bundle row a version takes its metadata from, among those of its image."""
    usable = [b for b in bundles if (b.details or {}).get("config")]
    if not usable:
        return None
    # pushed again with --force: the newest wins (as resolve_bundle decides), digest breaks ties
    return max(
        usable, key=lambda b: ((b.annotations or {}).get("org.opencontainers.image.created", ""), b.digest)
    )


@dataclass
class _VersionRows:
    """One version row and its child rows (without ``version_id``), ready for executemany."""

    version: dict[str, Any]
    platforms: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    keywords: list[dict[str, Any]] = field(default_factory=list)
    requirements: list[dict[str, Any]] = field(default_factory=list)


def _build_version(repo: Repository, tag: str, image: Any, bundle: Any | None) -> _VersionRows:
    """The rows of version ``tag`` from its image row and its bundle row (``None``: no metadata)."""
    version: dict[str, Any] = {
        "repository_id": repo.id,
        "name": repo.name,
        "namespace": repo.namespace,
        "tag": tag,
        "image_digest": image.digest,
        "image_media_type": image.media_type,
        "keywords": [],
        "authors": [],
        "requirements": [],
        "keywords_text": "",
        "authors_text": "",
        "indexed_at": utcnow(),
    }
    details = image.details or {}
    layers = [
        {
            "role": (item.get("annotations") or {}).get(ROLE_ANNOTATION) or "base",
            "media_type": item["mediaType"],
            "digest": item["digest"],
            "size": int(item["size"]),
        }
        for item in details.get("base_layers") or []
    ]
    platforms = [
        {
            "os": p.get("os") or "unknown",
            "architecture": p.get("architecture") or "unknown",
            "variant": p.get("variant"),
            "digest": p.get("digest") or image.digest,
        }
        for p in details.get("platforms") or []
    ]
    rows = _VersionRows(version, platforms, layers)
    if bundle is not None:
        config = bundle.details["config"]
        metadata = config["spec"]["metadata"]
        runtime = config["spec"].get("runtime") or {}
        source = config.get("source") or metadata.get("source") or {}
        keywords = list(metadata.get("keywords") or [])
        authors = list(metadata.get("authors") or [])
        version.update(
            bundle_digest=bundle.digest,
            description=metadata.get("description"),
            license=metadata.get("license"),
            keywords=keywords,
            authors=authors,
            requirements=list(runtime.get("requirements") or []),
            keywords_text=" ".join(keywords),
            authors_text=" ".join(str(a.get("name", "")) for a in authors),
            homepage=metadata.get("homepage"),
            source_url=source.get("url"),
            source_commit=source.get("commit"),
            created=config.get("created"),
            config=config,
        )
        # the image's own copies of code/model are the bundle's layers: keep only base ones there
        layers = [layer for layer in layers if layer["role"] == "base"]
        layers += [
            {"role": r["role"], "media_type": r["mediaType"], "digest": r["digest"], "size": int(r["size"])}
            for r in config.get("layers") or []
        ]
        rows.layers = layers
        rows.keywords = [{"keyword": k} for k in sorted({k.lower() for k in keywords})]
        requirements: dict[str, str] = {}
        for spec in version["requirements"]:
            requirements.setdefault(requirement_name(spec), spec)
        rows.requirements = [{"name": n, "spec": s} for n, s in sorted(requirements.items())]
    version["total_size"] = sum({layer["digest"]: layer["size"] for layer in layers}.values())
    return rows


def _image_layers(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "mediaType": str(layer.get("mediaType")),
            "digest": str(layer.get("digest")),
            "size": int(layer.get("size") or 0),
            "annotations": layer.get("annotations") or {},
        }
        for layer in document.get("layers") or []
        if isinstance(layer, dict)
    ]


def _fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _certificate_fingerprint(pem: object) -> str | None:
    """Key fingerprint of a signing certificate annotation (keyless cosign), else ``None``."""
    if not isinstance(pem, str) or not pem.strip():
        return None
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    return _fingerprint_der(
        certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _bundle_key_fingerprint(data: bytes) -> str | None:
    """The key a sigstore bundle names: ``publicKey.hint`` (base64 SHA-256 of the PKIX DER key)."""
    try:
        bundle = json.loads(data)
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        digest = base64.b64decode(str(hint), validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return digest.hex() if len(digest) == 32 else None
