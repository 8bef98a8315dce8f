"""The indexer's lean reader (urllib3) against a real distribution 2.8 registry: the same answers
and the same errors as the registry client it stands in for."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ecr_oci.devenv import LocalRegistry
from ecr_oci.devenv.registry import free_port
from ecr_oci.digest import Digest
from ecr_oci.errors import AuthError, NotFound, RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.auth import Credentials
from ecr_oci.oci.models import EMPTY_CONFIG_DIGEST, Descriptor, Manifest
from ecr_oci.oci.reads import MetadataReader
from ecr_oci.oci.registry import RegistryClient
from tests.fixtures.token_server import TokenServer

pytestmark = pytest.mark.integration


@pytest.fixture
def reader(registry: LocalRegistry) -> Iterator[MetadataReader]:
    made = MetadataReader(registry.host, insecure=True, connections=2)
    yield made
    made.close()


def _push(client: RegistryClient, repo: str, payload: bytes) -> tuple[Digest, Digest]:
    """A manifest tagged ``1`` with one layer ``payload``; (manifest digest, layer digest)."""
    layer = client.push_blob_bytes(repo, payload)
    client.push_blob_bytes(repo, b"{}")
    manifest = Manifest(
        config=Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2),
        layers=[layer.model_copy(update={"mediaType": "application/octet-stream"})],
    ).to_bytes()
    client.put_manifest(repo, "1", manifest, str(MediaType.OCI_MANIFEST))
    return Digest.of(manifest), layer.digest


def test_reads_what_the_client_reads(client: RegistryClient, reader: MetadataReader, repo: str) -> None:
    manifest, layer = _push(client, repo, b"payload")
    for reference in ("1", manifest):
        assert reader.get_manifest(repo, reference) == client.get_manifest(repo, reference)
    assert reader.get_blob(repo, layer) == client.get_blob(repo, layer) == b"payload"
    assert json.loads(reader.get_manifest(repo, "1").data)["layers"][0]["digest"] == str(layer)


def test_missing_manifest_and_blob_are_not_found(reader: MetadataReader, repo: str) -> None:
    with pytest.raises(NotFound):
        reader.get_manifest(repo, "nope")
    with pytest.raises(NotFound):
        reader.get_blob(repo, Digest.of(b"never pushed"))


def test_oversize_blob_is_refused_and_the_pool_still_answers(
    client: RegistryClient, reader: MetadataReader, repo: str
) -> None:
    """The unread rest of a refused body must not reach the next answer on that connection."""
    _, big = _push(client, repo, b"x" * 300_000)
    for _ in range(3):  # more attempts than pooled connections
        with pytest.raises(RegistryError, match="over the 1000-byte limit"):
            reader.get_blob(repo, big, max_size=1000)
        assert reader.get_manifest(repo, "1").media_type == MediaType.OCI_MANIFEST


def test_unreachable_registry_is_a_registry_error_without_status() -> None:
    """The indexer keeps a batch queued on exactly this (the registry is down, not the content)."""
    reader = MetadataReader(f"127.0.0.1:{free_port()}", insecure=True, retries=1, backoff=0.01)
    with pytest.raises(RegistryError, match="cannot reach the registry") as caught:
        reader.get_manifest("any/repo", "1")
    assert caught.value.status is None
    reader.close()


def test_token_registry_refuses_without_authorization_and_answers_with_it(
    token_registry: LocalRegistry, token_server: TokenServer
) -> None:
    """No challenge round trips: the caller (the service, which mints its own) gives the header."""
    repo = "ns/reads"
    with RegistryClient(token_registry.host, insecure=True, credentials=Credentials("alice", "pw")) as client:
        _, layer = _push(client, repo, b"secret")
    anonymous = MetadataReader(token_registry.host, insecure=True)
    with pytest.raises(AuthError):
        anonymous.get_blob(repo, layer)
    anonymous.close()
    token = token_server.issue("alice", [f"repository:{repo}:pull"])["token"]
    authorized = MetadataReader(token_registry.host, insecure=True, authorize=lambda path: f"Bearer {token}")
    assert authorized.get_blob(repo, layer) == b"secret"
    authorized.close()
