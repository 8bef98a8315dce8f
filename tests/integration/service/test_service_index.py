"""The ECR service against a real registry with notifications on, over HTTP, on SQLite and PostgreSQL.

Every test of this module runs twice (``db_kind``): the service process, the registry and the
database are shared by the module's tests of one kind; each test pushes to repositories of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from ecr_oci.bundle.push import PushResult, push_bundle
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.models import Event, ManifestRow, Repository, Signature, Tag, Version
from ecr_oci.server.services.queue import pending_count
from ecr_oci.server.services.reconcile import list_catalog
from ecr_oci.signing.sign import sign_image
from tests.fixtures.service import ServiceEnv
from tests.fixtures.tools import in_threads, wait_until
from tests.integration.conftest import write_bundle

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def push(env: ServiceEnv, tmp: Path, name: str, version: str = "0.1.0", *, model: bytes = b"w") -> PushResult:
    directory = write_bundle(
        tmp / f"{name}-{version}", base=env.base, name=name, version=version, model=model
    )
    clients: list[RegistryClient] = []

    def connect(host: str) -> RegistryClient:
        clients.append(RegistryClient(host, insecure=True))
        return clients[-1]

    try:
        return push_bundle(directory, registry=env.registry.host, connect=connect)
    finally:
        for client in clients:
            client.close()


class Index:
    """Read access to the service's database from the test."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)

    def version(self, repository: str, tag: str) -> Version | None:
        with self.sessions() as session:
            found = session.scalar(
                select(Version).join(Repository).where(Repository.name == repository, Version.tag == tag)
            )
            if found is not None:
                _ = (found.layers, found.platforms)  # load before the session closes
            return found

    def snapshot(self) -> dict[str, Any]:
        """Everything derived from the registry, as comparable plain values."""
        with self.sessions() as session:
            repos = {r.id: r.name for r in session.scalars(select(Repository))}
            return {
                "tags": sorted(
                    (repos[t.repository_id], t.name, t.digest) for t in session.scalars(select(Tag))
                ),
                "manifests": sorted(
                    (repos[m.repository_id], m.digest, m.kind, m.subject_digest or "")
                    for m in session.scalars(select(ManifestRow))
                ),
                "versions": sorted(
                    (v.name, v.tag, v.image_digest, v.bundle_digest or "")
                    for v in session.scalars(select(Version))
                ),
                "signatures": sorted(
                    (repos[s.repository_id], s.subject_digest, s.layer_digest, s.kind)
                    for s in session.scalars(select(Signature))
                ),
            }

    def wait_drained(self) -> None:
        """Until the service's indexing worker has applied every queued event (the rows go in
        the same transaction as the index writes, so an empty queue means indexed)."""
        wait_until(lambda: pending_count(self.sessions) == 0, what="the indexing queue to drain")

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(scope="module")
def index(service_env: ServiceEnv) -> Any:
    made = Index(service_env.database_url)
    yield made
    made.close()


def reconcile(env: ServiceEnv, *extra: str) -> dict[str, Any]:
    """``ecr-oci index reconcile`` as a real process against the service's settings."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecr_oci",
            "index",
            *(extra or ("reconcile",)),
            "--config",
            str(env.service.config_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def registry_walk(host: str) -> dict[str, Any]:
    """What the registry holds now: every (repository, tag, digest)."""
    with RegistryClient(host, insecure=True) as client:
        tags = []
        for repository in list_catalog(client):
            for tag in client.list_tags(repository):
                descriptor = client.head_manifest(repository, tag)
                if descriptor is not None:
                    tags.append((repository, tag, str(descriptor.digest)))
    return {"tags": sorted(tags)}


def test_push_is_indexed_within_seconds(service_env: ServiceEnv, index: Index, tmp_path: Path) -> None:
    name = _name("indexed")
    started = time.monotonic()
    result = push(service_env, tmp_path, name)
    repository = f"waggle/{name}"
    version = wait_until(
        lambda: (v := index.version(repository, "0.1.0")) and v.bundle_digest and v,
        what="the version and its bundle in the index",
    )
    assert time.monotonic() - started < 15
    assert version.image_digest == str(result.image_digest)
    assert version.bundle_digest == str(result.bundle_digest)
    assert version.description and version.description.startswith("Hello-world")
    assert version.keywords == ["example", "hello", "sensor"]
    assert {layer.role for layer in version.layers} == {"base", "code", "model"}
    assert [(p.os, p.architecture) for p in version.platforms] == [("linux", "amd64")]
    assert version.total_size and version.total_size > 0


def test_signature_referrer_appears_under_the_version(
    service_env: ServiceEnv, index: Index, tmp_path: Path
) -> None:
    name = _name("signed")
    result = push(service_env, tmp_path, name)
    repository = f"waggle/{name}"
    key = ec.generate_private_key(ec.SECP256R1())
    with RegistryClient(service_env.registry.host, insecure=True) as client:
        sign_image(
            client,
            Reference.parse(f"{service_env.registry.host}/{repository}:0.1.0"),
            key,
            bundle_format=True,
        )
    image = str(result.image_digest)
    fingerprint = hashlib.sha256(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).hexdigest()

    def signatures() -> list[tuple[str, str | None]]:
        with index.sessions() as session:
            rows = session.scalars(
                select(Signature)
                .join(Repository)
                .where(Repository.name == repository, Signature.subject_digest == image)
            )
            return sorted((s.kind, s.key_fingerprint) for s in rows)

    found = wait_until(lambda: len(signatures()) >= 2 and signatures(), what="signatures indexed")
    assert ("cosign", None) in found
    assert ("sigstore-bundle", fingerprint) in found


def test_push_is_indexed_from_the_manifests_alone(
    service_env: ServiceEnv, index: Index, tmp_path: Path
) -> None:
    """``ecr-oci push`` embeds the image's and the bundle's configs (OCI 1.1 ``data``): the
    indexer reads neither blob (each read costs the registry ~1 ms of CPU; docs/service.md)."""
    name = _name("inline")
    offset = service_env.registry.log_offset()
    result = push(service_env, tmp_path, name)
    repository = f"waggle/{name}"
    wait_until(lambda: (v := index.version(repository, "0.1.0")) and v.bundle_digest, what="the version")
    with RegistryClient(service_env.registry.host, insecure=True) as client:
        image = client.get_manifest(repository, result.image_digest).json()
        bundle = client.get_manifest(repository, result.bundle_digest).json()
    configs = {image["config"]["digest"], bundle["config"]["digest"]}
    assert all("data" in document["config"] for document in (image, bundle))
    version = index.version(repository, "0.1.0")
    assert version is not None and [(p.os, p.architecture) for p in version.platforms] == [("linux", "amd64")]
    assert version.description and version.description.startswith("Hello-world")  # from the bundle config
    read = [
        r.path for r in service_env.registry.responses(offset) if r.method == "GET" and "/blobs/" in r.path
    ]
    assert not [path for path in read if path.rsplit("/", 1)[-1] in configs]


def test_inline_config_that_lies_is_not_believed(service_env: ServiceEnv, index: Index) -> None:
    """A manifest whose inline config differs from its config blob: the blob (what the digest
    names, and what a node runs) decides the indexed platform."""
    repository = f"waggle/{_name('lying')}"
    with RegistryClient(service_env.registry.host, insecure=True) as client:
        layer = client.push_blob_bytes(repository, b"layer")
        real = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        config = client.push_blob_bytes(repository, real)
        claimed = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config.digest),
                "size": config.size,
                "data": base64.b64encode(claimed).decode(),
            },
            "layers": [{**layer.to_json_obj(), "mediaType": "application/vnd.oci.image.layer.v1.tar"}],
        }
        client.put_manifest(
            repository, "1.0.0", json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
        )
    version = wait_until(lambda: index.version(repository, "1.0.0"), what="the version")
    assert [(p.os, p.architecture) for p in version.platforms] == [("linux", "amd64")]


def test_deleted_tag_is_gone_after_reconcile(service_env: ServiceEnv, index: Index, tmp_path: Path) -> None:
    name = _name("deleted")
    result = push(service_env, tmp_path, name)
    repository = f"waggle/{name}"
    wait_until(lambda: index.version(repository, "0.1.0"), what="the version")
    with RegistryClient(service_env.registry.host, insecure=True) as client:
        client.delete_manifest(repository, result.image_digest)
    report = reconcile(service_env)
    assert report["errors"] == []
    assert index.version(repository, "0.1.0") is None
    tags = {t for r, t, _ in index.snapshot()["tags"] if r == repository}
    assert "0.1.0" not in tags


def _post(env: ServiceEnv, body: bytes, secret: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return httpx.post(env.service.events_url, content=body, headers=headers, timeout=30)


def test_same_events_twice_and_out_of_order_change_nothing(
    service_env: ServiceEnv, index: Index, tmp_path: Path
) -> None:
    name = _name("replay")
    first = push(service_env, tmp_path, name, "0.1.0")
    second = push(service_env, tmp_path, name, "0.2.0", model=b"other")
    repository = f"waggle/{name}"
    wait_until(
        lambda: all((v := index.version(repository, t)) and v.bundle_digest for t in ("0.1.0", "0.2.0")),
        what="both versions",
    )
    reconcile(service_env)
    before = index.snapshot()
    events = []
    for tag, digest in (
        ("0.2.0", second.image_digest),
        ("0.1.0", first.image_digest),
        ("0.2.0", first.image_digest),
    ):  # the last one is stale: the tag says otherwise
        events.append(
            {
                "id": str(uuid.uuid4()),
                "timestamp": "2024-01-01T00:00:00.123456789Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": str(digest),
                    "repository": repository,
                    "tag": tag,
                    "size": 1,
                },
                "request": {"method": "PUT", "useragent": "test"},
            }
        )
    events.append(
        {
            "id": str(uuid.uuid4()),
            "action": "delete",
            "target": {"digest": "sha256:" + "0" * 64, "repository": repository},
        }
    )
    body = json.dumps({"events": list(reversed(events))}).encode()
    for _ in range(2):  # the registry redelivers until it gets a 2xx
        response = _post(service_env, body, service_env.service.secret)
        assert response.status_code == 202, response.text
        assert response.json()["queued"] == len(events)  # both deliveries: the worker sorts them out
    index.wait_drained()
    assert index.snapshot() == before
    with index.sessions() as session:  # each delivered event is in the activity log once
        ids = [e["id"] for e in events]
        assert sorted(session.scalars(select(Event.event_id).where(Event.event_id.in_(ids)))) == sorted(ids)


def test_wrong_secret_is_401_json(service_env: ServiceEnv) -> None:
    for secret in (None, "wrong", service_env.service.secret + "x"):
        response = _post(service_env, b'{"events": []}', secret)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"events": [{"id": 1}]}', b'{"events": "x"}', b"\xff"])
def test_malformed_notification_is_400_json(service_env: ServiceEnv, body: bytes) -> None:
    response = _post(service_env, body, service_env.service.secret)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "MALFORMED_NOTIFICATION"
    assert "Traceback" not in response.text


def test_killed_during_a_burst_of_50_pushes_then_reconcile_equals_registry(
    service_env: ServiceEnv, index: Index, tmp_path: Path
) -> None:
    names = [_name("burst") for _ in range(10)]
    pushed: list[PushResult] = []
    killed = threading.Event()
    for i in range(50):
        name, version = names[i % 10], f"0.{i // 10}.0"
        pushed.append(push(service_env, tmp_path, name, version, model=f"{i}".encode()))
        if i == 15:
            service_env.service.kill()
            killed.set()
    assert killed.is_set()
    service_env.service.start()
    report = reconcile(service_env)
    assert report["errors"] == []
    index.wait_drained()  # what the restarted worker found queued, and the registry's retries
    walked = registry_walk(service_env.registry.host)
    snap = index.snapshot()
    assert snap["tags"] == walked["tags"]
    assert {(r, d) for r, d, _, _ in snap["manifests"]} == {(r, d) for r, _, d in walked["tags"]}
    versions = {(v[0], v[1]): (v[2], v[3]) for v in snap["versions"]}
    for result in pushed:
        key = (result.repository, result.version)
        assert versions[key] == (str(result.image_digest), str(result.bundle_digest)), key
    assert (
        sum(
            1 for (repo, _tag) in versions if repo.startswith("waggle/burst-") and repo.split("/")[1] in names
        )
        == 50
    )


def test_fifty_concurrent_profiles_are_listed_and_the_fallback_index_mended(
    service_env: ServiceEnv, tmp_path: Path, tool: Callable[[str], str]
) -> None:
    """Issue 6: 50 concurrent ``profile attach`` to one platform manifest. The service's OCI
    referrers endpoint (the referrers API it serves) lists all 50; the registry's tag-schema
    fallback index, which concurrent read-modify-writes may have left short, lists all 50 after
    the service's reconcile mends it — as ``oras discover`` (which reads only that index) shows."""
    from ecr_oci.mediatypes import MediaType
    from ecr_oci.profile import Profile, attach_profile

    pushed = push(service_env, tmp_path, _name("fifty"))
    ref = Reference.parse(pushed.image_reference)
    subjects: set[str] = set()

    def attach(number: int) -> None:
        profile = Profile.model_validate(
            {"device": {"name": f"dev-{number:02d}", "arch": "linux/amd64"}, "measures": {"wall_s": 1.0}}
        )
        with RegistryClient(service_env.registry.host, insecure=True) as own:
            subjects.add(str(attach_profile(own, ref, profile).subject))

    assert in_threads(attach, 50) == [] and len(subjects) == 1
    subject = subjects.pop()
    url = f"{service_env.service.url}/v2/{ref.repository}/referrers/{subject}"

    def listed() -> list[Any]:
        found: list[Any] = httpx.get(url, params={"artifactType": MediaType.PROFILE}, timeout=10).json()[
            "manifests"
        ]
        return found

    wait_until(lambda: len(listed()) == 50, timeout=60, what="the service to list all 50 profiles")
    report = reconcile(service_env)
    assert report["errors"] == []
    fallback = "sha256-" + subject.removeprefix("sha256:")
    with RegistryClient(service_env.registry.host, insecure=True) as client:
        entries = client.get_manifest(ref.repository, fallback).as_index().manifests
    assert len([e for e in entries if e.artifactType == MediaType.PROFILE]) == 50
    target = f"{service_env.registry.host}/{ref.repository}@{subject}"
    discovered = subprocess.run(
        [tool("oras"), "discover", "--plain-http", "--format", "json",
         "--artifact-type", str(MediaType.PROFILE), target],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found = json.loads(discovered.stdout)
    assert len(found.get("referrers", found.get("manifests", []))) == 50
