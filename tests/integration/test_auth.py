"""Registry authentication end to end: distribution with htpasswd (Basic) and with token auth (Bearer).

The token registry trusts :class:`tests.fixtures.token_server.TokenServer`: alice/pw may push and pull
``ns/*``, anonymous may pull ``ns/*``. Nothing is mocked: the registry verifies the JWTs itself.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from ecr_oci.devenv import LocalRegistry
from ecr_oci.devenv._process import CommandError
from ecr_oci.digest import Digest
from ecr_oci.errors import AuthError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.auth import Credentials, load_docker_config
from ecr_oci.oci.models import EMPTY_CONFIG_DIGEST, Descriptor, Manifest
from ecr_oci.oci.registry import RegistryClient
from tests.fixtures.registry import RegistryFactory
from tests.fixtures.token_server import TokenServer

pytestmark = pytest.mark.integration

MiB = 1 << 20
ALICE = Credentials("alice", "pw")
WRONG_PASSWORD = "not-the-pw-0xC0FFEE"
EMPTY_CONFIG = Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2)


def opener_of(data: bytes, piece: int = 256 * 1024):
    def open_at(offset: int) -> Iterator[bytes]:
        for start in range(offset, len(data), piece):
            yield data[start : start + piece]

    return open_at


def push_image(client: RegistryClient, repository: str, tag: str, *, layers: int = 1) -> Digest:
    """Push an OCI image (empty config + ``layers`` random layers) under ``tag``; its digest."""
    client.push_blob_bytes(repository, b"{}")
    descriptors = []
    for _ in range(layers):
        data = os.urandom(1000)
        client.push_blob(repository, Digest.of(data), len(data), opener_of(data))
        descriptors.append(
            Descriptor(mediaType=MediaType.OCI_LAYER_GZIP, digest=Digest.of(data), size=len(data))
        )
    data = Manifest(config=EMPTY_CONFIG, layers=descriptors).to_bytes()
    client.put_manifest(repository, tag, data, MediaType.OCI_MANIFEST)
    return Digest.of(data)


def assert_no_secret(err: Exception, password: str, username: str = "alice") -> None:
    text = f"{err} {err!r} {getattr(err, 'url', '')}"
    assert password not in text
    assert base64.b64encode(f"{username}:{password}".encode()).decode() not in text
    assert "\n" not in str(err)  # one line for the CLI


# -- Basic auth: distribution's htpasswd backend ------------------------------------------------------


@pytest.fixture
def basic_registry(registry_factory: RegistryFactory, tmp_path: Path) -> LocalRegistry:
    """A registry that wants Basic credentials (bcrypt htpasswd, alice/pw)."""
    htpasswd = tmp_path / "htpasswd"
    # cost 4: distribution checks the hash on every request; the default (12) costs ~0.25 s each
    hashed = bcrypt.hashpw(ALICE.password.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"alice:{hashed}\n")
    return registry_factory(extra_config={"auth": {"htpasswd": {"realm": "ecr-test", "path": str(htpasswd)}}})


def test_basic_anonymous_push_is_refused(basic_registry: LocalRegistry) -> None:
    with RegistryClient(basic_registry.host, insecure=True) as client, pytest.raises(AuthError) as caught:
        push_image(client, "ns/app", "1.0")
    assert caught.value.status == 401
    assert "\n" not in str(caught.value)


def test_basic_credentials_push_and_pull(basic_registry: LocalRegistry) -> None:
    with RegistryClient(basic_registry.host, insecure=True, credentials=ALICE) as client:
        digest = push_image(client, "ns/app", "1.0", layers=2)
        assert client.get_manifest("ns/app", "1.0").digest == digest
        assert client.list_tags("ns/app") == ["1.0"]


def test_basic_chunked_upload(basic_registry: LocalRegistry) -> None:
    data = os.urandom(3 * MiB)
    with RegistryClient(
        basic_registry.host, insecure=True, credentials=ALICE, chunk_size=MiB, monolithic_limit=1 << 16
    ) as client:
        client.push_blob("ns/big", Digest.of(data), len(data), opener_of(data), check_exists=False)
        assert client.blob_size("ns/big", Digest.of(data)) == len(data)


def test_basic_credentials_from_a_docker_config_file(basic_registry: LocalRegistry, tmp_path: Path) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(b"alice:pw").decode()
    config.write_text(json.dumps({"auths": {f"https://{basic_registry.host}": {"auth": auth}}}))
    credentials = load_docker_config(config)[basic_registry.host]
    with RegistryClient(basic_registry.host, insecure=True, credentials=credentials) as client:
        push_image(client, "ns/from-config", "1.0")
        assert client.list_tags("ns/from-config") == ["1.0"]


def test_basic_wrong_password_is_refused_without_showing_it(basic_registry: LocalRegistry) -> None:
    wrong = Credentials("alice", WRONG_PASSWORD)
    with (
        RegistryClient(basic_registry.host, insecure=True, credentials=wrong) as client,
        pytest.raises(AuthError) as caught,
    ):
        push_image(client, "ns/app", "1.0")
    assert caught.value.status == 401
    assert_no_secret(caught.value, WRONG_PASSWORD)


# -- Bearer tokens: distribution's auth.token with a real token server ---------------------------------


def test_anonymous_can_pull_what_alice_pushed(token_registry: LocalRegistry) -> None:
    with RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice:
        digest = push_image(alice, "ns/app", "1.0")
    with RegistryClient(token_registry.host, insecure=True) as anonymous:
        raw = anonymous.get_manifest("ns/app", "1.0")
        assert raw.digest == digest
        layer = raw.as_manifest().layers[0]
        assert len(b"".join(anonymous.iter_blob("ns/app", layer.digest))) == layer.size
        assert anonymous.list_tags("ns/app") == ["1.0"]


def test_anonymous_push_is_refused(token_registry: LocalRegistry, token_server: TokenServer) -> None:
    with RegistryClient(token_registry.host, insecure=True) as anonymous, pytest.raises(AuthError) as caught:
        push_image(anonymous, "ns/app", "1.0")
    assert caught.value.status == 401
    assert "\n" not in str(caught.value)
    assert {r.user for r in token_server.requests} == {None}  # asked as anonymous, got pull only


def test_alice_pushes_with_few_token_requests(
    token_registry: LocalRegistry, token_server: TokenServer
) -> None:
    offset = token_registry.log_offset()
    with RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice:
        digest = push_image(alice, "ns/app", "1.0", layers=5)
        assert alice.manifest_digest("ns/app", "1.0") == digest
        assert alice.get_manifest("ns/app", digest).digest == digest
    registry_requests = len(token_registry.responses(offset))
    tokens = token_server.token_requests()
    # challenge → token → retry: a pull token at the first HEAD, a push token at the first upload;
    # every other request reuses the token cached for the repository
    assert len(tokens) <= 2, tokens
    assert registry_requests >= 15
    assert all(r.user == "alice" and r.method == "GET" for r in tokens)
    assert any("push" in scope for r in tokens for scope in r.scopes)


def test_chunked_upload_under_token_auth(token_registry: LocalRegistry) -> None:
    data = os.urandom(5 * MiB)
    digest = Digest.of(data)
    offset = token_registry.log_offset()
    with RegistryClient(
        token_registry.host, insecure=True, credentials=ALICE, chunk_size=MiB, monolithic_limit=1 << 16
    ) as alice:
        assert alice.push_blob("ns/big", digest, len(data), opener_of(data)) is True
        patches = [r for r in token_registry.responses(offset) if r.method == "PATCH" and r.status == 202]
        assert len(patches) == 5
        assert alice.blob_size("ns/big", digest) == len(data)
        assert b"".join(alice.iter_blob("ns/big", digest)) == data


def test_chunked_upload_without_a_prior_existence_check(token_registry: LocalRegistry) -> None:
    # the first request is then the body-less POST that fetches the push token
    data = os.urandom(2 * MiB)
    with RegistryClient(
        token_registry.host, insecure=True, credentials=ALICE, chunk_size=MiB, monolithic_limit=1 << 16
    ) as alice:
        alice.push_blob("ns/big", Digest.of(data), len(data), opener_of(data), check_exists=False)
        assert alice.blob_size("ns/big", Digest.of(data)) == len(data)


def test_wrong_password_is_refused_by_the_token_server(
    token_registry: LocalRegistry, token_server: TokenServer
) -> None:
    wrong = Credentials("alice", WRONG_PASSWORD)
    with (
        RegistryClient(token_registry.host, insecure=True, credentials=wrong) as client,
        pytest.raises(AuthError, match="refused") as caught,
    ):
        push_image(client, "ns/app", "1.0")
    assert caught.value.status == 401
    assert_no_secret(caught.value, WRONG_PASSWORD)
    assert token_server.token_requests() == []


def test_unknown_user_is_refused(token_registry: LocalRegistry) -> None:
    mallory = Credentials("mallory", "x")
    with (
        RegistryClient(token_registry.host, insecure=True, credentials=mallory) as client,
        pytest.raises(AuthError, match="refused"),
    ):
        client.list_tags("ns/app")


def test_alice_cannot_push_outside_her_namespace(token_registry: LocalRegistry) -> None:
    with (
        RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice,
        pytest.raises(AuthError),
    ):
        push_image(alice, "other/app", "1.0")


def test_cross_repository_mount_asks_for_the_source_too(
    token_registry: LocalRegistry, token_server: TokenServer
) -> None:
    data = os.urandom(4000)
    digest = Digest.of(data)
    with RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice:
        alice.push_blob("ns/src", digest, len(data), opener_of(data))
    before = len(token_server.token_requests())
    with RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice:
        assert alice.mount_blob("ns/dst", digest, "ns/src") is True
        assert alice.blob_size("ns/dst", digest) == len(data)
    mount_tokens = token_server.token_requests()[before:]
    assert any("repository:ns/src:pull" in r.scopes for r in mount_tokens), mount_tokens


def test_skopeo_reads_the_token_registry_with_alices_credentials(
    token_registry: LocalRegistry, skopeo
) -> None:
    with RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice:
        digest = push_image(alice, "ns/x", "tag")
    out = skopeo(
        "inspect",
        "--raw",
        "--creds",
        "alice:pw",
        "--tls-verify=false",
        f"docker://{token_registry.host}/ns/x:tag",
    )
    assert Digest.of(out.encode()) == digest


def test_skopeo_with_a_wrong_password_fails(token_registry: LocalRegistry, skopeo) -> None:
    with RegistryClient(token_registry.host, insecure=True, credentials=ALICE) as alice:
        push_image(alice, "ns/x", "tag")
    with pytest.raises(CommandError, match=r"401|unauthorized|invalid username/password"):
        skopeo(
            "inspect",
            "--creds",
            "alice:nope",
            "--tls-verify=false",
            f"docker://{token_registry.host}/ns/x:tag",
        )


def test_token_expiring_mid_upload_is_renewed_and_the_upload_completes(
    token_registry: LocalRegistry, token_server: TokenServer
) -> None:
    # the client keeps a token for expires_in - 10 s (at least 5 s): pause after the first chunk so
    # the next PATCH goes out without one, meets the challenge and must resume, not restart
    token_server.expires_in = 15
    data = os.urandom(3 * MiB)
    paused = False

    def progress(_: int) -> None:
        nonlocal paused
        if not paused:
            paused = True
            time.sleep(5.2)

    offset = token_registry.log_offset()
    with RegistryClient(
        token_registry.host,
        insecure=True,
        credentials=ALICE,
        chunk_size=MiB,
        monolithic_limit=1 << 16,
        backoff=0.01,
    ) as alice:
        alice.push_blob("ns/big", Digest.of(data), len(data), opener_of(data, piece=MiB), progress=progress)
        assert alice.get_blob("ns/big", Digest.of(data), max_size=len(data)) == data
    patches = [r for r in token_registry.responses(offset) if r.method == "PATCH" and r.status == 202]
    assert len(patches) == 3  # every chunk sent once: the upload resumed where it stood
    assert len(token_server.token_requests()) >= 3  # pull, push, and the renewal
