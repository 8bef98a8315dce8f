"""Reconcile: walk the registry (catalog → tags → manifests → referrers) and converge the index.

    >>> make_client = lambda: RegistryClient("127.0.0.1:5000", insecure=True)  # doctest: +SKIP
    >>> Reconciler(write_sessions, make_client).run().summary()                # doctest: +SKIP
    '3 repositories, 12 tags, 4 manifests fetched, 0 removed, 0 errors in 0.2 s'

Why: notifications are best effort (the registry queues them in memory and loses them when it
restarts; the service may be down), so the index is made right by walking the source of truth.
Per repository: list its tags, HEAD each (cheap), fetch only the manifests the index lacks, ask the
registry's referrers API for the referrers of each version's image when it has one (with the tag
fallback every referrer is already a tag), then write in one short transaction: upsert what was
found, drop tags and manifests the registry no longer has. Network work happens outside the
transaction, so notifications keep being indexed meanwhile; rows written after the walk started
are left alone (an event newer than our listing is not undone by it).

One pass at a time: a lock in this process, and on PostgreSQL an advisory lock, so that service
replicas over one database do not walk the registry together (SQLite has one writer anyway).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.digest import Digest
from ecr_oci.errors import RegistryError
from ecr_oci.oci.referrers import referrer_tag_subjects, referrers_from_api, repair_fallback_index
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.server.db.models import ManifestRow, Repository, Tag, Version, utcnow
from ecr_oci.server.services.index import (
    FetchedManifest,
    Indexer,
    is_version_tag,
    repository_row,
    sync_versions,
)
from ecr_oci.server.services.profiles import refresh_summaries

__all__ = ["ReconcileReport", "Reconciler", "list_catalog"]

log = logging.getLogger("ecr_oci.server.reconcile")

#: PostgreSQL advisory lock key of reconcile (any constant shared by all replicas).
RECONCILE_LOCK = 0x65637252 << 8
#: Parallel registry requests during a walk (HEADs and fetches are small and latency-bound).
WORKERS = 8


@dataclass
class ReconcileReport:
    """What one pass did."""

    repositories: int = 0
    tags: int = 0
    fetched: int = 0
    removed_manifests: int = 0
    removed_tags: int = 0
    removed_repositories: int = 0
    #: Referrer entries put back into fallback indexes that lost them to concurrent attaches.
    mended: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False

    def summary(self) -> str:
        if self.skipped:
            return "skipped: another reconcile holds the lock"
        return (
            f"{self.repositories} repositories, {self.tags} tags, {self.fetched} manifests fetched, "
            f"{self.removed_manifests + self.removed_tags} removed, {self.mended} referrers mended, "
            f"{len(self.errors)} errors "
            f"in {self.seconds:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "repositories": self.repositories,
            "tags": self.tags,
            "fetched": self.fetched,
            "removed_manifests": self.removed_manifests,
            "removed_tags": self.removed_tags,
            "removed_repositories": self.removed_repositories,
            "mended": self.mended,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
        }


def list_catalog(client: RegistryClient, *, page: int = 1000) -> list[str]:
    """Every repository of ``/v2/_catalog``, following ``Link`` pagination."""
    names: list[str] = []
    path: str | None = f"/v2/_catalog?n={page}"
    while path:
        response = client.send_raw("GET", path, what="list repositories")
        names += response.json().get("repositories") or []
        link: str | None = response.links.get("next", {}).get("url")
        path = urljoin(path, link) if link else None
    return sorted(set(names))


class Reconciler:
    """Runs reconcile passes, one at a time; :meth:`stop` makes a running pass end early."""

    def __init__(self, sessions: sessionmaker[Session], client_factory: Callable[[], RegistryClient]) -> None:
        self.sessions = sessions
        self.client_factory = client_factory
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def resume(self) -> None:
        """Allow passes again after :meth:`stop` (an app started a second time)."""
        self._stop.clear()

    @property
    def engine(self) -> Engine:
        bind = self.sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    def run(self, *, rebuild: bool = False) -> ReconcileReport:
        """One pass (``rebuild``: empty the index first). Raises RegistryError when the registry
        cannot be listed; a manifest that cannot be fetched is reported in ``errors`` and skipped."""
        with self._lock, self._database_lock() as locked:
            if not locked:
                return ReconcileReport(skipped=True)
            started = time.monotonic()
            if rebuild:
                with self.sessions.begin() as session:
                    session.execute(delete(Repository))
            with self.client_factory() as client:
                report = self._walk(client)
            report.seconds = time.monotonic() - started
            return report

    @contextlib.contextmanager
    def _database_lock(self) -> Iterator[bool]:
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        with self.engine.connect() as connection:
            locked = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RECONCILE_LOCK}).scalar()
            )
            connection.commit()
            try:
                yield locked
            finally:
                if locked:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RECONCILE_LOCK})
                    connection.commit()

    def _walk(self, client: RegistryClient) -> ReconcileReport:
        report = ReconcileReport()
        walk_started = utcnow()
        catalog = list_catalog(client)
        report.repositories = len(catalog)
        indexer = Indexer(client)
        referrers_api: bool | None = None
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="reconcile") as pool:
            for repository in catalog:
                if self._stop.is_set():
                    report.errors.append("stopped before the end")
                    return report
                referrers_api = self._repository(
                    client, indexer, pool, repository, walk_started, report, referrers_api
                )
        with self.sessions.begin() as session:
            gone = select(Repository).where(
                Repository.name.not_in(catalog), Repository.created_at < walk_started
            )
            for repo in session.scalars(gone):
                session.delete(repo)
                report.removed_repositories += 1
        return report

    def _repository(
        self,
        client: RegistryClient,
        indexer: Indexer,
        pool: ThreadPoolExecutor,
        repository: str,
        walk_started: datetime,
        report: ReconcileReport,
        referrers_api: bool | None,
    ) -> bool | None:
        tags = client.list_tags(repository)
        if referrers_api is not True:
            _mend(client, repository, tags, report)
        heads = dict(zip(tags, pool.map(lambda t: client.head_manifest(repository, t), tags), strict=True))
        current = {tag: str(d.digest) for tag, d in heads.items() if d is not None}
        report.tags += len(current)
        with self.sessions() as session:
            known = set(
                session.scalars(
                    select(ManifestRow.digest).join(Repository).where(Repository.name == repository)
                )
            )
        tag_of = {digest: tag for tag, digest in sorted(current.items())}
        wanted = set(current.values())
        # referrers without a tag: only where the registry has the referrers API
        if referrers_api is not False:
            images = [d for t, d in current.items() if is_version_tag(t)]
            for image in images:
                found = referrers_from_api(client, repository, Digest.parse(image))
                if found is None:
                    referrers_api = False
                    break
                referrers_api = True
                wanted |= {str(d.digest) for d in found}
        missing = sorted(wanted - known)

        def fetch(digest: str) -> FetchedManifest | RegistryError | None:
            try:
                return indexer.fetch(repository, Digest.parse(digest), tag=tag_of.get(digest))
            except RegistryError as err:
                if err.status is None:
                    raise  # the registry went away: end the pass
                return err

        fetched: list[FetchedManifest] = []
        failed: set[str] = set()
        for digest, result in zip(missing, pool.map(fetch, missing), strict=True):
            if isinstance(result, RegistryError):
                failed.add(digest)  # kept as it is; the next pass tries again
                report.errors.append(f"{repository}@{digest}: {result}")
            elif result is not None:
                fetched.append(result)
        report.fetched += len(fetched)
        with self.sessions.begin() as session:
            repo = repository_row(session, repository)
            indexer.store_many(session, [(item, None) for item in fetched])  # set-based, one pass
            affected: set[str] = set()
            # when each tag was last written, read once (not once per tag)
            updated = dict(
                session.execute(select(Tag.name, Tag.updated_at).where(Tag.repository_id == repo.id))
                .tuples()
                .all()
            )
            pointers = [
                (repo, tag, digest)
                for tag, digest in current.items()
                # an event that moved a tag after we listed it is newer than our view
                if not (tag in updated and _after(updated[tag], walk_started))
            ]
            affected |= indexer.set_tags(session, pointers, sync=False).get(repo.id, set())
            stale_tags = session.scalars(
                select(Tag).where(
                    Tag.repository_id == repo.id,
                    Tag.name.not_in(list(current)),
                    Tag.updated_at < walk_started,
                )
            )
            for row in stale_tags:
                affected.add(row.name)
                session.delete(row)
                report.removed_tags += 1
            session.flush()
            live = wanted | failed
            stale = session.scalars(
                select(ManifestRow).where(
                    ManifestRow.repository_id == repo.id,
                    ManifestRow.digest.not_in(sorted(live)),
                    ManifestRow.indexed_at < walk_started,
                )
            )
            profiles_gone = False
            for manifest in stale:
                profiles_gone |= manifest.kind == "profile"
                session.delete(manifest)
                report.removed_manifests += 1
            session.flush()
            if profiles_gone:  # their runs went with them (cascade): re-aggregate (issue 6)
                refresh_summaries(session, repo.id)
            # every version is re-derived (below), so those built on a removed image or bundle too
            affected |= set(session.scalars(select(Version.tag).where(Version.repository_id == repo.id)))
            sync_versions(session, repo, affected | set(current))
        return referrers_api


def _mend(client: RegistryClient, repository: str, tags: list[str], report: ReconcileReport) -> None:
    """Put referrers lost from fallback indexes (concurrent attaches race on them) back, from
    their own tags, so that tools reading only the index (oras, cosign) see them all."""
    for fallback, referrer_tags in sorted(referrer_tag_subjects(tags).items()):
        subject = Digest.parse("sha256:" + fallback.removeprefix("sha256-"))
        try:
            report.mended += repair_fallback_index(client, repository, subject, tags=referrer_tags)
        except RegistryError as err:
            if err.status is None:
                raise  # the registry went away: end the pass
            report.errors.append(f"{repository} {fallback}: {err}")


def _after(moment: datetime, reference: datetime) -> bool:
    """``moment > reference``, comparing naive (SQLite) and aware (PostgreSQL) times as UTC."""
    if moment.tzinfo is None:
        reference = reference.replace(tzinfo=None)
    return moment > reference
