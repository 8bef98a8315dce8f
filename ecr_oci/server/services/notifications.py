"""What a batch of registry events does to the index and the activity log (no HTTP here).

    >>> handle_events([], sessions, client_factory)                 # doctest: +SKIP
    {'recorded': 0, 'indexed': 0, 'deferred': 0}

Manifest pushes index the pushed reference (its current state, re-read from the registry);
manifest deletes forget the digest. Blob events only go to activity (they are not, and pulls
never touch the index). Any failure of one event is logged and counted as ``deferred``: reconcile
converges it later, so nothing here raises to the HTTP layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.digest import Digest
from ecr_oci.errors import Error
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.server.services.activity import NotificationEvent, record_events
from ecr_oci.server.services.index import Indexer

__all__ = ["handle_events"]

log = logging.getLogger("ecr_oci.server.notifications")


def handle_events(
    events: list[NotificationEvent],
    sessions: sessionmaker[Session],
    client_factory: Callable[[], RegistryClient],
) -> dict[str, int]:
    recorded = indexed = deferred = 0
    try:
        with sessions.begin() as session:
            recorded = record_events(session, events)
    except Exception:
        log.exception("could not record %d events (activity only; the index is unaffected)", len(events))
    work = [
        e
        for e in events
        if (e.is_manifest and e.action in ("push", "delete")) or (e.action == "delete" and e.target.digest)
    ]
    if not work:
        return {"recorded": recorded, "indexed": 0, "deferred": 0}
    with client_factory() as client:
        indexer = Indexer(client, sessions)
        for event in work:
            target = event.target
            try:
                if event.action == "push":
                    if target.tag:
                        indexer.index_reference(target.repository, tag=target.tag)
                    elif target.digest:
                        indexer.index_reference(target.repository, digest=Digest.parse(target.digest))
                elif target.digest:
                    with sessions.begin() as session:
                        indexer.forget_manifest(session, target.repository, target.digest)
                indexed += 1
            except Error as err:
                deferred += 1
                log.warning(
                    "event %s (%s %s): %s; left for reconcile", event.id, event.action, target.repository, err
                )
            except Exception:
                deferred += 1
                log.exception(
                    "event %s (%s %s) failed; left for reconcile", event.id, event.action, target.repository
                )
    return {"recorded": recorded, "indexed": indexed, "deferred": deferred}
