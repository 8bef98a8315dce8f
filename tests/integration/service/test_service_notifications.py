"""The notification handler's shortcuts, in process, against a real registry: what each event
costs in registry round trips (counted from the registry's own log) and database transactions,
and that skipping work never changes what the index ends up saying."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from ecr_oci.devenv import LocalRegistry
from ecr_oci.devenv.registry import LoggedResponse
from ecr_oci.digest import Digest
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.db.models import Event, ManifestRow, Repository, Tag, Version
from ecr_oci.server.services.activity import NotificationEnvelope
from ecr_oci.server.services.index import BlobCache
from ecr_oci.server.services.notifications import TAG_SETTLE_S, handle_events
from tests.fixtures.tools import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Env:
    registry: LocalRegistry
    client: RegistryClient
    engine: Engine
    repository: str

    def handle(self, *events: dict[str, Any]) -> dict[str, int]:
        envelope = NotificationEnvelope.model_validate({"events": list(events)})
        return handle_events(
            envelope.events, session_factory(self.engine, write=True), self.client, cache=BlobCache()
        )

    def requests(self, since: int) -> list[LoggedResponse]:
        """The registry's requests for this test's repository after log offset ``since``."""
        return [r for r in self.registry.responses(since, settle=0.2) if f"/{self.repository}/" in r.path]

    def tags(self) -> dict[str, str]:
        with session_factory(self.engine)() as session:
            return {
                t.name: t.digest
                for t in session.scalars(
                    select(Tag).join(Repository).where(Repository.name == self.repository)
                )
            }

    def versions(self) -> dict[str, str]:
        with session_factory(self.engine)() as session:
            return {
                v.tag: v.image_digest
                for v in session.scalars(
                    select(Version).join(Repository).where(Repository.name == self.repository)
                )
            }


@pytest.fixture
def env(registry: LocalRegistry, tmp_path: Path) -> Iterator[Env]:
    engine = make_engine(f"sqlite:///{tmp_path}/index.db")
    upgrade(engine)
    with RegistryClient(registry.host, insecure=True) as client:
        yield Env(registry, client, engine, f"notify/t-{uuid.uuid4().hex[:8]}")
    engine.dispose()


def push_image(env: Env, tag: str, n: int) -> str:
    layer = env.client.push_blob_bytes(env.repository, f"layer-{n}".encode())
    config = env.client.push_blob_bytes(
        env.repository,
        json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "n": n}).encode(),
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_MANIFEST),
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config.digest),
                "size": config.size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer.digest),
                    "size": layer.size,
                }
            ],
        }
    ).encode()
    env.client.put_manifest(env.repository, tag, manifest, str(MediaType.OCI_MANIFEST))
    return str(Digest.of(manifest))


def push_event(env: Env, digest: str, tag: str | None = None, action: str = "push") -> dict[str, Any]:
    target: dict[str, Any] = {
        "mediaType": str(MediaType.OCI_MANIFEST),
        "digest": digest,
        "repository": env.repository,
    }
    if tag is not None:
        target["tag"] = tag
    return {
        "id": uuid.uuid4().hex,
        "timestamp": "2024-01-01T00:00:00Z",
        "action": action,
        "target": target,
        "request": {"method": "PUT" if action == "push" else "GET", "useragent": "test"},
    }


def test_new_tag_costs_one_manifest_and_one_config_read(env: Env) -> None:
    digest = push_image(env, "0.1.0", 1)
    offset = env.registry.log_offset()
    assert env.handle(push_event(env, digest, "0.1.0"))["indexed"] == 1
    made = [(r.method, r.path.split("/")[-2]) for r in env.requests(offset)]
    # the tag's current target and the manifest in one GET (no HEAD first), then the config
    assert sorted(made) == [("GET", "blobs"), ("GET", "manifests")]
    assert env.versions() == {"0.1.0": digest}


def test_replayed_push_and_indexed_digest_cost_no_registry_read(env: Env) -> None:
    digest = push_image(env, "0.1.0", 1)
    env.handle(push_event(env, digest, "0.1.0"))
    before = (env.tags(), env.versions())
    offset = env.registry.log_offset()
    result = env.handle(push_event(env, digest, "0.1.0"), push_event(env, digest))  # by tag, by digest
    assert result == {"recorded": 2, "indexed": 2, "deferred": 0}
    assert env.requests(offset) == []
    assert (env.tags(), env.versions()) == before


def test_pull_events_only_record_activity(env: Env) -> None:
    digest = push_image(env, "0.1.0", 1)
    offset = env.registry.log_offset()
    result = env.handle(push_event(env, digest, "0.1.0", action="pull"))
    assert result == {"recorded": 1, "indexed": 0, "deferred": 0}
    assert env.requests(offset) == []
    assert env.tags() == {}
    with session_factory(env.engine)() as session:
        assert session.scalar(select(Event.action).where(Event.repository == env.repository)) == "pull"


def test_moved_tag_is_followed_and_a_stale_event_is_not(env: Env) -> None:
    first = push_image(env, "latest", 1)
    env.handle(push_event(env, first, "latest"))
    second = push_image(env, "latest", 2)  # the tag moves
    offset = env.registry.log_offset()
    env.handle(push_event(env, second, "latest"))
    assert env.tags() == {"latest": second}
    assert sorted(r.method for r in env.requests(offset)) == ["GET", "GET"]  # manifest + config
    # the first push's event arrives late: the index differs from it, so the tag is re-read
    offset = env.registry.log_offset()
    env.handle(push_event(env, first, "latest"))
    assert env.tags() == {"latest": second}
    # only reads of the tag (repeated while it disagrees with the event: the registry notifies
    # before it writes the tag); its manifest is indexed already, so nothing else
    made = [(r.method, r.path.split("/")[-2]) for r in env.requests(offset)]
    assert made == [("GET", "manifests")] * (1 + len(TAG_SETTLE_S))


def test_late_push_of_a_deleted_tag_does_not_bring_it_back(env: Env) -> None:
    digest = push_image(env, "0.1.0", 1)
    env.client.delete_manifest(env.repository, Digest.parse(digest))
    env.handle(push_event(env, digest, "0.1.0"))
    assert env.tags() == {}
    assert env.versions() == {}


def test_one_write_transaction_per_batch(env: Env) -> None:
    events = [push_event(env, push_image(env, f"0.1.{i}", i), f"0.1.{i}") for i in range(5)]
    begins: list[str] = []
    listener = lambda conn: begins.append("begin")  # noqa: E731
    event.listen(env.engine, "begin", listener)
    try:
        result = env.handle(*events, *events)  # replays in the same batch too
    finally:
        event.remove(env.engine, "begin", listener)
    assert result == {"recorded": 5, "indexed": 5, "deferred": 0}  # each replay recorded and indexed once
    assert len(begins) == 2  # one read to plan, one write for activity and index
    assert set(env.versions()) == {f"0.1.{i}" for i in range(5)}
    with session_factory(env.engine)() as session:
        count = len(
            list(
                session.scalars(select(ManifestRow).join(Repository).where(Repository.name == env.repository))
            )
        )
    assert count == 5


def test_cosign_signature_tag_is_indexed(env: Env) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from ecr_oci.reference import Reference
    from ecr_oci.signing.sign import sign_image

    digest = push_image(env, "0.1.0", 1)
    env.handle(push_event(env, digest, "0.1.0"))
    sign_image(
        env.client,
        Reference.parse(f"{env.registry.host}/{env.repository}:0.1.0"),
        ec.generate_private_key(ec.SECP256R1()),
        bundle_format=True,
    )
    sig_tag = "sha256-" + digest.split(":")[1] + ".sig"
    sig = env.client.head_manifest(env.repository, sig_tag)
    assert sig is not None
    assert env.handle(push_event(env, str(sig.digest), sig_tag))["indexed"] == 1
    assert env.tags().get(sig_tag) == str(sig.digest)


# --- the queued design: POST /events answers 202, the worker indexes (services.queue) ----------


#: fastapi's TestClient (the app with its lifespan, so the worker runs) warns about httpx.
_testclient = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _settings(env: Env) -> Any:
    from ecr_oci.server.settings import Settings

    url = env.engine.url.render_as_string(hide_password=False)
    return Settings(
        database_url=url,
        registry=env.registry.host,
        registry_insecure=True,
        notification_secret="s",
        reconcile_on_start=False,
        reconcile_interval=0,
    )


def _post(http: Any, *events: dict[str, Any]) -> Any:
    response = http.post(
        "/events", content=json.dumps({"events": list(events)}), headers={"Authorization": "Bearer s"}
    )
    assert response.status_code == 202, response.text
    return response.json()


@_testclient
def test_a_burst_of_events_is_indexed_by_the_worker(env: Env) -> None:
    from fastapi.testclient import TestClient

    from ecr_oci.server.app import create_app

    pushed = {f"0.{i}.0": push_image(env, f"0.{i}.0", i) for i in range(40)}
    app = create_app(_settings(env))
    with TestClient(app) as http:
        for tag, digest in pushed.items():
            body = _post(http, push_event(env, digest, tag))
            assert body == {"received": 1, "queued": 1}
        _post(http, *[push_event(env, d, t) for t, d in pushed.items()])  # replays, one request
        app.state.event_queue.wait_drained()
        assert env.versions() == pushed


@_testclient
def test_queued_events_survive_a_restart(env: Env) -> None:
    from fastapi.testclient import TestClient

    from ecr_oci.server.app import create_app
    from ecr_oci.server.db.models import PendingEvent
    from ecr_oci.server.services.queue import pending_count

    pushed = {f"0.{i}.0": push_image(env, f"0.{i}.0", i) for i in range(5)}
    sessions = session_factory(env.engine)
    app = create_app(_settings(env))
    with TestClient(app) as http:
        app.state.event_queue.stop()  # the worker is gone: events are accepted, not indexed
        for tag, digest in pushed.items():
            _post(http, push_event(env, digest, tag))
    # the service stopped with the events queued (durably: rows, not memory)
    assert pending_count(sessions) == 5 and env.versions() == {}
    with sessions() as session:
        payloads = session.scalars(select(PendingEvent.payload))
        assert {json.loads(p)["target"]["tag"] for p in payloads} == set(pushed)
    app = create_app(_settings(env))
    with TestClient(app):  # the next start drains the table first
        app.state.event_queue.wait_drained()
    assert env.versions() == pushed


def test_a_malformed_event_does_not_block_the_batch(env: Env) -> None:
    from ecr_oci.server.app import SharedClient
    from ecr_oci.server.db.models import PendingEvent
    from ecr_oci.server.services.queue import EventQueue

    good = {f"0.{i}.0": push_image(env, f"0.{i}.0", i) for i in range(3)}
    sessions = session_factory(env.engine, write=True)
    bad_digest = push_event(env, "sha256:not-hex", None)  # parses; the plan fails (Digest.parse)
    missing = push_event(env, "sha256:" + "0" * 64, "9.9.9")  # the registry has no such tag
    with sessions.begin() as session:
        session.add(PendingEvent(event_id="junk", payload="{not json"))
        session.add(PendingEvent(event_id="half", payload='{"id": "x", "action": "push"}'))
        for payload in (bad_digest, missing, *[push_event(env, d, t) for t, d in good.items()]):
            session.add(PendingEvent(event_id=payload["id"], payload=json.dumps(payload)))
    shared = SharedClient(lambda: RegistryClient(env.registry.host, insecure=True))
    queue = EventQueue(sessions, shared.get, workers=4)
    queue.start()
    try:
        queue.wait_drained()
    finally:
        queue.stop()
        shared.close()
    assert env.versions() == good
    assert env.tags() == good


def test_a_batch_with_a_failing_event_keeps_the_others(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch is applied without savepoints first; when that fails, once more, each event in
    its own savepoint: the bad one is left for reconcile, the others are indexed."""
    from ecr_oci.server.services import index as index_module

    pushed = {f"0.{i}.0": push_image(env, f"0.{i}.0", i) for i in range(3)}
    store_many = index_module.Indexer.store_many

    def store_or_fail(self: Any, session: Any, manifests: Any, **kwargs: Any) -> Any:
        if any(tag == "0.1.0" for _, tag in manifests):
            raise RuntimeError("bad event")
        return store_many(self, session, manifests, **kwargs)

    monkeypatch.setattr(index_module.Indexer, "store_many", store_or_fail)
    result = env.handle(*[push_event(env, d, t) for t, d in pushed.items()])
    assert result == {"recorded": 3, "indexed": 2, "deferred": 1}
    assert env.versions() == {t: d for t, d in pushed.items() if t != "0.1.0"}


def test_queued_events_stay_queued_while_the_registry_cannot_be_reached(env: Env) -> None:
    """A registry outage is not the events' fault: the batch stays queued and is indexed once the
    registry answers again (only an event's own bad content sends it to reconcile)."""
    from ecr_oci.devenv.registry import free_port
    from ecr_oci.server.db.models import PendingEvent
    from ecr_oci.server.services.queue import EventQueue, pending_count

    pushed = {f"0.{i}.0": push_image(env, f"0.{i}.0", i) for i in range(3)}
    sessions = session_factory(env.engine, write=True)
    with sessions.begin() as session:
        for tag, digest in pushed.items():
            payload = push_event(env, digest, tag)
            session.add(PendingEvent(event_id=payload["id"], payload=json.dumps(payload)))
    dead = RegistryClient(f"127.0.0.1:{free_port()}", insecure=True, retries=0, timeout=2.0)
    live = RegistryClient(env.registry.host, insecure=True)
    current = [dead]
    batches: list[RegistryClient] = []

    def reads() -> RegistryClient:  # one call per batch the worker tries
        batches.append(current[0])
        return current[0]

    queue = EventQueue(sessions, reads, workers=2)
    queue.start()
    try:
        wait_until(lambda: batches.count(dead) >= 2, what="two batches tried against the dead address")
        assert pending_count(sessions) == 3 and env.versions() == {}
        current[0] = live
        queue.wait_drained()
    finally:
        queue.stop()
        dead.close()
        live.close()
    assert env.versions() == pushed


def test_activity_the_database_cannot_take_now_keeps_the_batch_queued(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker records the activity of queued events: a database that fails for now (locked,
    connection lost) must not drop it; the batch stays queued and its retry records it."""
    from sqlalchemy.exc import OperationalError

    from ecr_oci.server.db.models import PendingEvent
    from ecr_oci.server.services import notifications
    from ecr_oci.server.services.queue import EventQueue, pending_count

    digest = push_image(env, "0.1.0", 1)
    payload = push_event(env, digest, "0.1.0")
    sessions = session_factory(env.engine, write=True)
    with sessions.begin() as session:
        session.add(PendingEvent(event_id=payload["id"], payload=json.dumps(payload)))

    def locked(*_: object) -> set[str]:
        raise OperationalError("INSERT INTO event", {}, Exception("database is locked"))

    queue = EventQueue(sessions, lambda: env.client)
    with monkeypatch.context() as patched:
        patched.setattr(notifications, "record_events", locked)
        with pytest.raises(OperationalError):
            queue.drain_once()
    assert pending_count(sessions) == 1 and env.versions() == {}
    assert queue.drain_once() == 1
    assert pending_count(sessions) == 0 and env.versions() == {"0.1.0": digest}
    with session_factory(env.engine)() as session:
        assert session.scalars(select(Event.event_id)).all() == [payload["id"]]


def test_a_value_the_schema_refuses_is_the_events_own_failure() -> None:
    """Retrying cures a lock or a lost connection, never a value the schema refuses: such an
    event goes to reconcile instead of holding the queue (notifications._transient)."""
    from sqlalchemy.exc import DataError, IntegrityError, OperationalError

    from ecr_oci.errors import RegistryError
    from ecr_oci.server.services.notifications import _transient

    cause = Exception("cause")
    assert _transient(OperationalError("UPDATE", {}, cause))
    assert _transient(RegistryError("cannot reach the registry", url="http://127.0.0.1:1/v2/"))
    assert not _transient(DataError("INSERT", {}, cause))
    assert not _transient(IntegrityError("INSERT", {}, cause))
    assert not _transient(RegistryError("manifest unknown", url="http://127.0.0.1:1/v2/", status=404))
