"""What a batch of registry events does to the index and the activity log (no HTTP here).

    >>> handle_events([], sessions, client)                          # doctest: +SKIP
    {'recorded': 0, 'indexed': 0, 'deferred': 0}

Manifest pushes index the pushed reference; manifest deletes forget the digest. Blob events only
go to activity (they are not, and pulls never touch the index). Any failure of one event is
logged and counted as ``deferred``: reconcile converges it later, so nothing here raises to the
HTTP layer.

Three phases per batch, so that no database transaction waits on the network:

1. *plan* (one short read of the index): what the index already says about each event's tag
   and digest;
2. *fetch* (registry, no transaction): only what is new. A manifest is immutable by digest, so
   a digest already indexed is never fetched again; only a tag pointer can move. A tagged push
   whose tag the index already points at the event's digest carries nothing new and costs no
   round trip. Otherwise the tag's *current* target is read (one GET by tag: digest and manifest
   together) instead of trusting the event, so a late event for a tag that moved since indexes
   the present, not the past (out-of-order events converge). The registry notifies before it
   writes the tag, so a read that disagrees with the event is repeated a few times
   (:data:`TAG_SETTLE_S`) before the registry's answer is taken;
3. *apply* (one write transaction for the whole batch: activity rows and index upserts), each
   event in its own savepoint, so that one bad event does not undo the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.digest import Digest
from ecr_oci.errors import Error
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.server.db.models import ManifestRow, Repository, Tag
from ecr_oci.server.services.activity import NotificationEvent, record_events
from ecr_oci.server.services.index import (
    BlobCache,
    FetchedManifest,
    Indexer,
    lock_repository,
    repository_row,
)

__all__ = ["handle_events"]

log = logging.getLogger("ecr_oci.server.notifications")

#: Pauses before re-reading a tag that does not (yet) point where its push event says.
TAG_SETTLE_S = (0.02, 0.05, 0.1)


@dataclass
class _Step:
    """What one event does to the index, decided before the write transaction."""

    event: NotificationEvent
    action: str  # "store" | "tag" | "forget-tag" | "forget-manifest" | "nothing"
    repository: str
    tag: str | None = None
    digest: str | None = None
    fetched: FetchedManifest | None = None


class _Known:
    """What the index holds about the batch's tags and digests, read once; updated as the batch
    plans, so that a digest fetched for one event is not fetched again for the next."""

    def __init__(self, session: Session, events: list[NotificationEvent]) -> None:
        repositories = {e.target.repository for e in events}
        self.tags: dict[tuple[str, str], str] = {}
        self.digests: set[tuple[str, str]] = set()
        if not repositories:
            return
        tags = {e.target.tag for e in events if e.target.tag}
        digests = {e.target.digest for e in events if e.target.digest}
        if tags:
            for repo, name, digest in session.execute(
                select(Repository.name, Tag.name, Tag.digest)
                .join(Repository, Repository.id == Tag.repository_id)
                .where(Repository.name.in_(repositories), Tag.name.in_(tags))
            ):
                self.tags[(repo, name)] = digest
        wanted = digests | set(self.tags.values())
        if wanted:
            for repo, digest in session.execute(
                select(Repository.name, ManifestRow.digest)
                .join(Repository, Repository.id == ManifestRow.repository_id)
                .where(Repository.name.in_(repositories), ManifestRow.digest.in_(wanted))
            ):
                self.digests.add((repo, digest))

    def has(self, repository: str, digest: str) -> bool:
        return (repository, digest) in self.digests


def _is_work(event: NotificationEvent) -> bool:
    return (event.is_manifest and event.action in ("push", "delete")) or bool(
        event.action == "delete" and event.target.digest
    )


def _plan(indexer: Indexer, event: NotificationEvent, known: _Known) -> _Step:
    """Read from the registry what ``event`` needs (nothing when the index already has it)."""
    target = event.target
    repository = target.repository
    if event.action != "push":
        if target.digest:
            known.digests.discard((repository, target.digest))
            return _Step(event, "forget-manifest", repository, digest=target.digest)
        return _Step(event, "nothing", repository)
    if target.tag:
        tag = target.tag
        if (
            target.digest
            and known.tags.get((repository, tag)) == target.digest
            and known.has(repository, target.digest)
        ):
            return _Step(event, "nothing", repository)  # a replay: the index already says so
        raw = indexer.current_manifest(repository, tag)
        for pause in TAG_SETTLE_S:
            if target.digest is None or (raw is not None and str(raw.digest) == target.digest):
                break
            # distribution sends a tagged push's event after storing the manifest but before
            # writing the tag: a read that quick may still see the old target (or none). Read
            # again a little later; only a stale event disagrees for good.
            time.sleep(pause)
            raw = indexer.current_manifest(repository, tag)
        if raw is None:
            known.tags.pop((repository, tag), None)
            return _Step(event, "forget-tag", repository, tag=tag)
        digest = str(raw.digest)
        known.tags[(repository, tag)] = digest
        if known.has(repository, digest):
            return _Step(event, "tag", repository, tag=tag, digest=digest)
        fetched = indexer.fetch(repository, raw.digest, tag=tag, raw=raw)
        if fetched is None:
            return _Step(event, "forget-manifest", repository, digest=digest)
        known.digests.add((repository, digest))
        return _Step(event, "store", repository, tag=tag, digest=digest, fetched=fetched)
    if not target.digest:
        return _Step(event, "nothing", repository)
    if known.has(repository, target.digest):
        return _Step(event, "nothing", repository)  # immutable by digest: indexed once is enough
    fetched = indexer.fetch(repository, Digest.parse(target.digest))
    if fetched is None:
        return _Step(event, "forget-manifest", repository, digest=target.digest)
    known.digests.add((repository, target.digest))
    return _Step(event, "store", repository, digest=target.digest, fetched=fetched)


def _apply(indexer: Indexer, session: Session, step: _Step) -> None:
    if step.action == "store":
        assert step.fetched is not None
        indexer.store(session, step.fetched, tag=step.tag)
    elif step.action == "tag":
        assert step.tag is not None and step.digest is not None
        lock_repository(session, step.repository)
        indexer.set_tag(session, repository_row(session, step.repository), step.tag, step.digest)
    elif step.action == "forget-tag":
        assert step.tag is not None
        indexer.forget_tag(session, step.repository, step.tag)
    elif step.action == "forget-manifest":
        assert step.digest is not None
        indexer.forget_manifest(session, step.repository, step.digest)


def _failed(event: NotificationEvent, err: Exception) -> None:
    target = event.target
    if isinstance(err, Error):
        log.warning(
            "event %s (%s %s): %s; left for reconcile", event.id, event.action, target.repository, err
        )
    else:
        log.error(
            "event %s (%s %s) failed; left for reconcile",
            event.id,
            event.action,
            target.repository,
            exc_info=err,
        )


def handle_events(
    events: list[NotificationEvent],
    sessions: sessionmaker[Session],
    client: RegistryClient,
    *,
    cache: BlobCache | None = None,
) -> dict[str, int]:
    """Record and index one notification batch; ``client`` is used, not closed (the service
    keeps one alive across requests: connection reuse); ``cache`` keeps small immutable blobs."""
    recorded = indexed = deferred = 0
    indexer = Indexer(client, sessions, cache=cache)
    work = [e for e in events if _is_work(e)]
    steps: list[_Step] = []
    if work:
        try:
            with sessions() as session:
                known = _Known(session, work)
        except Exception as err:
            log.error("could not read the index for %d events; left for reconcile", len(work), exc_info=err)
            work, deferred = [], len(work)
            known = None
        for event in work:
            assert known is not None
            try:
                steps.append(_plan(indexer, event, known))
            except Exception as err:
                deferred += 1
                _failed(event, err)
    n = len(events)
    try:
        with sessions.begin() as session:
            try:
                with session.begin_nested():
                    recorded = record_events(session, events)
            except Exception:
                log.exception("could not record %d events (activity only; the index is unaffected)", n)
            for step in steps:
                try:
                    with session.begin_nested():
                        _apply(indexer, session, step)
                    indexed += 1
                except Exception as err:
                    deferred += 1
                    _failed(step.event, err)
    except Exception as err:  # the commit itself failed: nothing of the batch was written
        log.error("could not write %d events; left for reconcile", len(events), exc_info=err)
        deferred += indexed
        indexed = recorded = 0
    return {"recorded": recorded, "indexed": indexed, "deferred": deferred}
