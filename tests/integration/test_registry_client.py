"""The registry client against a real distribution 2.8 registry: blobs, manifests, tags, referrers.

Every test works in a repository of its own on the session ``registry``, so they share one process.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ecr_oci.devenv import LocalRegistry
from ecr_oci.devenv.registry import free_port
from ecr_oci.digest import Digest
from ecr_oci.errors import DigestMismatchError, NotFound, RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import EMPTY_CONFIG_DIGEST, Descriptor, Index, Manifest, Platform, RawManifest
from ecr_oci.oci.referrers import (
    attach,
    fallback_tag,
    list_referrers,
    referrer_tag,
    referrer_tag_subjects,
    repair_fallback_index,
)
from ecr_oci.oci.registry import RegistryClient
from tests.fixtures.tools import in_threads

pytestmark = pytest.mark.integration

MiB = 1 << 20
EMPTY_CONFIG = Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2)
SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


# -- helpers ----------------------------------------------------------------------------------------


def opener_of(data: bytes, piece: int = 300 * 1024):
    """A blob opener yielding ``data`` from ``offset`` on, in pieces not aligned to any chunk size."""

    def open_at(offset: int) -> Iterator[bytes]:
        for start in range(offset, len(data), piece):
            yield data[start : start + piece]

    return open_at


def push_bytes(client: RegistryClient, repository: str, data: bytes) -> Descriptor:
    client.push_blob(repository, Digest.of(data), len(data), opener_of(data))
    return Descriptor(mediaType=MediaType.OCI_LAYER_GZIP, digest=Digest.of(data), size=len(data))


def push_image(
    client: RegistryClient, repository: str, tag: str | None = None, *, content: bytes | None = None
) -> RawManifest:
    """An OCI image manifest (empty config + one layer) pushed by tag, or by digest without one."""
    client.push_blob_bytes(repository, b"{}")
    layer = push_bytes(client, repository, content if content is not None else os.urandom(64))
    data = Manifest(config=EMPTY_CONFIG, layers=[layer]).to_bytes()
    digest = Digest.of(data)
    client.put_manifest(repository, tag or digest, data, MediaType.OCI_MANIFEST)
    return RawManifest(MediaType.OCI_MANIFEST, digest, data)


def blob_file(registry: LocalRegistry, digest: Digest) -> Path:
    """Where distribution's filesystem driver keeps a blob's bytes."""
    return (
        registry.storage_dir
        / "docker/registry/v2/blobs"
        / digest.algorithm
        / digest.hex[:2]
        / digest.hex
        / "data"
    )


def requests_to(registry: LocalRegistry, offset: int, repository: str, method: str) -> int:
    return sum(1 for r in registry.responses(offset) if r.method == method and f"/v2/{repository}/" in r.path)


# -- blobs ------------------------------------------------------------------------------------------


def test_small_blob_is_pushed_in_one_put_and_read_back(
    client: RegistryClient, registry: LocalRegistry, repo: str
) -> None:
    data = os.urandom(10_000)
    progress: list[int] = []
    offset = registry.log_offset()
    assert client.push_blob(repo, Digest.of(data), len(data), opener_of(data), progress=progress.append)
    assert sum(progress) == len(data)
    assert requests_to(registry, offset, repo, "PATCH") == 0
    assert requests_to(registry, offset, repo, "PUT") == 1
    assert client.blob_size(repo, Digest.of(data)) == len(data)
    assert b"".join(client.iter_blob(repo, Digest.of(data))) == data
    assert client.get_blob(repo, Digest.of(data)) == data


def test_large_blob_is_pushed_in_chunks_and_read_back(registry: LocalRegistry, repo: str) -> None:
    data = os.urandom(5 * MiB)
    digest = Digest.of(data)
    progress: list[int] = []
    offset = registry.log_offset()
    with RegistryClient(registry.host, insecure=True, chunk_size=MiB, monolithic_limit=1 << 16) as client:
        assert client.push_blob(repo, digest, len(data), opener_of(data), progress=progress.append)
        assert requests_to(registry, offset, repo, "PATCH") == 5
        assert sum(progress) == len(data)
        assert client.blob_size(repo, digest) == len(data)
        received = bytearray()
        for chunk in client.iter_blob(repo, digest, chunk_size=256 * 1024):
            received += chunk
        assert bytes(received) == data


def test_chunked_push_of_a_size_that_is_not_a_multiple_of_the_chunk(
    registry: LocalRegistry, repo: str
) -> None:
    data = os.urandom(2 * MiB + 12345)
    with RegistryClient(registry.host, insecure=True, chunk_size=MiB, monolithic_limit=1 << 16) as client:
        client.push_blob(repo, Digest.of(data), len(data), opener_of(data, piece=777_777))
        assert client.get_blob(repo, Digest.of(data)) == data


def test_existing_blob_is_not_uploaded_again(
    client: RegistryClient, registry: LocalRegistry, repo: str
) -> None:
    data = os.urandom(1000)
    assert client.push_blob(repo, Digest.of(data), len(data), opener_of(data)) is True
    offset = registry.log_offset()
    progress: list[int] = []
    assert (
        client.push_blob(repo, Digest.of(data), len(data), opener_of(data), progress=progress.append) is False
    )
    assert progress == [len(data)]  # a skipped blob still counts as done for progress bars
    assert requests_to(registry, offset, repo, "POST") == 0


def test_missing_blob_has_no_size(client: RegistryClient, repo: str) -> None:
    assert client.blob_size(repo, Digest.of(b"never pushed")) is None


def test_push_blob_bytes_returns_its_descriptor(client: RegistryClient, repo: str) -> None:
    descriptor = client.push_blob_bytes(repo, b'{"a":1}')
    assert (descriptor.digest, descriptor.size) == (Digest.of(b'{"a":1}'), 7)
    assert client.get_blob(repo, descriptor.digest) == b'{"a":1}'


def test_mount_links_a_blob_from_another_repository(client: RegistryClient, repo: str) -> None:
    data = os.urandom(2000)
    push_bytes(client, f"{repo}-src", data)
    assert client.mount_blob(repo, Digest.of(data), f"{repo}-src") is True
    assert client.blob_size(repo, Digest.of(data)) == len(data)
    assert client.get_blob(repo, Digest.of(data)) == data


def test_mount_of_a_blob_the_source_lacks_returns_false(client: RegistryClient, repo: str) -> None:
    push_bytes(client, f"{repo}-src", b"something else")
    assert client.mount_blob(repo, Digest.of(b"not there"), f"{repo}-src") is False
    assert client.blob_size(repo, Digest.of(b"not there")) is None


def test_corrupted_blob_raises_digest_mismatch(
    client: RegistryClient, registry: LocalRegistry, repo: str
) -> None:
    data = os.urandom(3 * MiB)
    digest = push_bytes(client, repo, data).digest
    path = blob_file(registry, digest)
    assert path.read_bytes() == data
    path.write_bytes(os.urandom(len(data)))  # same length: only the hash can tell
    with pytest.raises(DigestMismatchError, match=str(digest)):
        for _ in client.iter_blob(repo, digest):
            pass
    with pytest.raises(DigestMismatchError):
        client.get_blob(repo, digest)


def test_get_blob_refuses_blobs_over_the_metadata_limit(client: RegistryClient, repo: str) -> None:
    data = os.urandom(5000)
    push_bytes(client, repo, data)
    with pytest.raises(RegistryError, match="4096-byte limit"):
        client.get_blob(repo, Digest.of(data), max_size=4096)


def test_iter_blob_streams_without_holding_the_blob_in_memory(client: RegistryClient, repo: str) -> None:
    data = os.urandom(32 * MiB)
    digest = push_bytes(client, repo, data).digest
    del data
    tracemalloc.start()
    try:
        chunks = client.iter_blob(repo, digest)
        next(chunks)
        _, peak_at_first_chunk = tracemalloc.get_traced_memory()
        for _ in chunks:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_at_first_chunk < 8 * MiB, f"{peak_at_first_chunk / MiB:.0f} MiB held before the first chunk"
    assert peak < 8 * MiB


def test_wrong_digest_is_refused_and_the_upload_url_redacted(client: RegistryClient, repo: str) -> None:
    claimed = Digest.of(b"claimed content")
    with pytest.raises(RegistryError) as caught:
        client.push_blob(repo, claimed, 15, opener_of(b"not the content"))
    err = caught.value
    assert err.status == 400
    assert "DIGEST_INVALID" in err.codes
    assert "_state=REDACTED" in err.url
    assert f"digest={claimed}" in err.url
    assert "\n" not in str(err)


def test_chunked_upload_with_wrong_digest_is_refused(registry: LocalRegistry, repo: str) -> None:
    data = os.urandom(2 * MiB)
    with (
        RegistryClient(registry.host, insecure=True, chunk_size=MiB, monolithic_limit=1 << 16) as client,
        pytest.raises(RegistryError) as caught,
    ):
        client.push_blob(repo, Digest.of(b"other"), len(data), opener_of(data))
    assert "DIGEST_INVALID" in caught.value.codes


# -- manifests --------------------------------------------------------------------------------------


def test_manifest_put_get_head_by_tag_and_digest(client: RegistryClient, repo: str) -> None:
    pushed = push_image(client, repo, "1.0")
    by_tag = client.get_manifest(repo, "1.0")
    assert (by_tag.data, by_tag.digest, by_tag.media_type) == (
        pushed.data,
        pushed.digest,
        MediaType.OCI_MANIFEST,
    )
    by_digest = client.get_manifest(repo, pushed.digest)
    assert by_digest.data == pushed.data
    for reference in ("1.0", pushed.digest):
        head = client.head_manifest(repo, reference)
        assert head == Descriptor(
            mediaType=MediaType.OCI_MANIFEST, digest=pushed.digest, size=len(pushed.data)
        )
    assert client.manifest_digest(repo, "1.0") == pushed.digest
    assert by_tag.as_manifest().layers[0].mediaType == MediaType.OCI_LAYER_GZIP


def test_index_put_and_get(client: RegistryClient, repo: str) -> None:
    amd64 = push_image(client, repo)
    arm64 = push_image(client, repo)
    index = Index(
        manifests=[
            amd64.descriptor(platform=Platform.parse("linux/amd64")),
            arm64.descriptor(platform=Platform.parse("linux/arm64/v8")),
        ],
        annotations={"org.opencontainers.image.version": "1.0"},
    )
    client.put_manifest(repo, "1.0", index.to_bytes(), MediaType.OCI_INDEX)
    raw = client.get_manifest(repo, "1.0")
    assert raw.media_type == MediaType.OCI_INDEX and raw.is_index
    assert raw.data == index.to_bytes()
    assert raw.as_index() == index
    head = client.head_manifest(repo, "1.0")
    assert head is not None and head.mediaType == MediaType.OCI_INDEX


def test_registry_hides_oci_manifests_from_requests_without_the_accept_list(
    client: RegistryClient, registry: LocalRegistry, repo: str
) -> None:
    push_image(client, repo, "1.0")
    plain = httpx.get(f"{registry.url}/v2/{repo}/manifests/1.0", headers={"Accept": "*/*"})
    assert plain.status_code == 404  # why the client always sends MANIFEST_ACCEPT (REFERENCE.md)
    assert client.get_manifest(repo, "1.0").media_type == MediaType.OCI_MANIFEST


def test_artifact_manifest_with_artifact_type_and_subject_round_trips(
    client: RegistryClient, repo: str
) -> None:
    subject = push_image(client, repo, "1.0")
    payload = push_bytes(client, repo, b"payload")
    manifest = Manifest(
        artifactType=SBOM,
        config=EMPTY_CONFIG,
        layers=[payload.model_copy(update={"mediaType": "application/spdx+json"})],
        subject=subject.descriptor(),
        annotations={"k": "v"},
    )
    data = manifest.to_bytes()
    client.put_manifest(repo, Digest.of(data), data, manifest.mediaType)
    assert client.get_manifest(repo, Digest.of(data)).data == data


def test_get_manifest_by_digest_verifies_the_content(
    client: RegistryClient, registry: LocalRegistry, repo: str
) -> None:
    client.push_blob_bytes(repo, b"{}")
    layer = push_bytes(client, repo, os.urandom(64))
    data = Manifest(config=EMPTY_CONFIG, layers=[layer], annotations={"note": "aaaa"}).to_bytes()
    digest = Digest.of(data)
    client.put_manifest(repo, digest, data, MediaType.OCI_MANIFEST)
    blob_file(registry, digest).write_bytes(data.replace(b'"aaaa"', b'"bbbb"'))  # still valid JSON
    with pytest.raises(DigestMismatchError, match=str(digest)):
        client.get_manifest(repo, digest)


def test_delete_manifest_removes_it_and_its_tags(client: RegistryClient, repo: str) -> None:
    pushed = push_image(client, repo, "1.0")
    keep = push_image(client, repo, "2.0")
    client.delete_manifest(repo, pushed.digest)
    assert client.head_manifest(repo, pushed.digest) is None
    assert client.head_manifest(repo, "1.0") is None
    with pytest.raises(NotFound):
        client.get_manifest(repo, pushed.digest)
    assert client.list_tags(repo) == ["2.0"]
    assert client.manifest_digest(repo, "2.0") == keep.digest


def test_list_tags_is_sorted(client: RegistryClient, repo: str) -> None:
    image = push_image(client, repo, "b")
    for tag in ("c", "a", "1.0.0"):
        client.put_manifest(repo, tag, image.data, MediaType.OCI_MANIFEST)
    assert client.list_tags(repo) == ["1.0.0", "a", "b", "c"]


def test_list_tags_of_a_missing_repository_is_empty(client: RegistryClient, repo: str) -> None:
    assert client.list_tags(repo) == []


# -- errors -----------------------------------------------------------------------------------------


def test_unknown_manifest_raises_not_found_with_code_and_url(
    client: RegistryClient, registry: LocalRegistry, repo: str
) -> None:
    push_image(client, repo, "1.0")
    with pytest.raises(NotFound) as caught:
        client.get_manifest(repo, "nope")
    err = caught.value
    assert err.status == 404
    assert "MANIFEST_UNKNOWN" in err.codes
    assert err.url == f"http://{registry.host}/v2/{repo}/manifests/nope"
    assert "\n" not in str(err) and "MANIFEST_UNKNOWN" in str(err)
    assert client.head_manifest(repo, "nope") is None
    with pytest.raises(NotFound):
        client.manifest_digest(repo, "nope")


def test_manifest_referencing_a_missing_blob_is_refused(client: RegistryClient, repo: str) -> None:
    client.push_blob_bytes(repo, b"{}")
    missing = Descriptor(mediaType=MediaType.OCI_LAYER_GZIP, digest=Digest.of(b"not uploaded"), size=12)
    data = Manifest(config=EMPTY_CONFIG, layers=[missing]).to_bytes()
    with pytest.raises(RegistryError) as caught:
        client.put_manifest(repo, "1.0", data, MediaType.OCI_MANIFEST)
    err = caught.value
    assert not isinstance(err, NotFound)
    assert err.status == 400
    assert "MANIFEST_BLOB_UNKNOWN" in err.codes
    assert client.list_tags(repo) == []


def test_closed_port_raises_cannot_reach(repo: str) -> None:
    host = f"127.0.0.1:{free_port()}"
    with RegistryClient(host, insecure=True, retries=1, backoff=0.01) as client:
        with pytest.raises(RegistryError, match="cannot reach") as caught:
            client.ping()
        assert caught.value.status is None
        with pytest.raises(RegistryError, match="cannot reach"):
            client.get_manifest(repo, "1.0")


def test_ping_answers_for_a_running_registry(client: RegistryClient) -> None:
    client.ping()


# -- referrers (distribution 2.8 has no API: the sha256-<hex> tag-schema fallback) ---------------------


def referrer(
    client: RegistryClient, repository: str, subject: RawManifest, artifact_type: str, note: str
) -> Manifest:
    payload = push_bytes(client, repository, note.encode())
    return Manifest(
        artifactType=artifact_type,
        config=EMPTY_CONFIG,
        layers=[payload.model_copy(update={"mediaType": "application/octet-stream"})],
        subject=subject.descriptor(),
        annotations={"org.example.note": note},
    )


def test_attached_referrers_are_listed_with_type_and_annotations(client: RegistryClient, repo: str) -> None:
    subject = push_image(client, repo, "1.0")
    sbom = referrer(client, repo, subject, SBOM, "sbom")
    signature = referrer(client, repo, subject, SIGNATURE, "signature")
    sbom_descriptor = attach(client, repo, sbom)
    attach(client, repo, signature)

    listed = list_referrers(client, repo, subject.digest)
    assert {d.digest for d in listed} == {Digest.of(sbom.to_bytes()), Digest.of(signature.to_bytes())}
    by_type = {d.artifactType: d for d in listed}
    assert by_type[SBOM] == sbom_descriptor
    assert by_type[SBOM].annotations == {"org.example.note": "sbom"}
    assert by_type[SIGNATURE].annotations == {"org.example.note": "signature"}
    assert by_type[SBOM].mediaType == MediaType.OCI_MANIFEST
    assert by_type[SBOM].size == len(sbom.to_bytes())
    # the referrer itself was pushed by digest and is fetchable
    assert client.get_manifest(repo, sbom_descriptor.digest).data == sbom.to_bytes()
    # the fallback index is where distribution-spec's tag schema says
    assert fallback_tag(subject.digest) in client.list_tags(repo)


def test_list_referrers_filters_by_artifact_type(client: RegistryClient, repo: str) -> None:
    subject = push_image(client, repo, "1.0")
    attach(client, repo, referrer(client, repo, subject, SBOM, "sbom"))
    attach(client, repo, referrer(client, repo, subject, SIGNATURE, "signature"))
    only = list_referrers(client, repo, subject.digest, artifact_type=SIGNATURE)
    assert [d.artifactType for d in only] == [SIGNATURE]
    assert list_referrers(client, repo, subject.digest, artifact_type="application/none") == []


def test_subject_without_referrers_lists_none(client: RegistryClient, repo: str) -> None:
    subject = push_image(client, repo, "1.0")
    assert list_referrers(client, repo, subject.digest) == []


def test_attaching_the_same_referrer_twice_lists_it_once(client: RegistryClient, repo: str) -> None:
    subject = push_image(client, repo, "1.0")
    sbom = referrer(client, repo, subject, SBOM, "sbom")
    first = attach(client, repo, sbom)
    second = attach(client, repo, sbom)
    assert first == second
    assert list_referrers(client, repo, subject.digest) == [first]


def test_attach_requires_a_subject(client: RegistryClient, repo: str) -> None:
    with pytest.raises(ValueError, match="subject"):
        attach(client, repo, Manifest(config=EMPTY_CONFIG, layers=[]))


def test_concurrent_attaches_to_one_subject_are_all_listed(registry: LocalRegistry, repo: str) -> None:
    writers = 20
    with RegistryClient(registry.host, insecure=True) as setup:
        subject = push_image(setup, repo, "1.0")
        referrers = [referrer(setup, repo, subject, SBOM, f"writer-{i}") for i in range(writers)]
    start = threading.Barrier(writers)

    def attach_one(number: int) -> None:
        with RegistryClient(registry.host, insecure=True) as own:
            start.wait()
            attach(own, repo, referrers[number])

    errors = in_threads(attach_one, writers)  # reported below, with the listing

    with RegistryClient(registry.host, insecure=True) as reader:
        listed = {d.digest for d in list_referrers(reader, repo, subject.digest)}
    lost = {Digest.of(m.to_bytes()) for m in referrers} - listed
    failures = sorted({str(err) for err in errors})
    assert not lost and not failures, (
        f"{len(lost)} of {writers} referrers lost; {len(errors)} attach calls failed: {failures[:2]}"
    )


def test_repair_puts_lost_entries_back_into_the_fallback_index(client: RegistryClient, repo: str) -> None:
    """What a lost update leaves (a referrer under its own tag, missing from the shared index) is
    what ``repair_fallback_index`` mends, so tools that read only the index see every referrer."""
    subject = push_image(client, repo, "1.0")
    kept = attach(client, repo, referrer(client, repo, subject, SBOM, "kept"))
    lost = [referrer(client, repo, subject, SIGNATURE, f"lost-{i}") for i in range(2)]
    for manifest in lost:  # attach's first two steps only: as if its index write lost the race
        data = manifest.to_bytes()
        client.put_manifest(repo, Digest.of(data), data, MediaType.OCI_MANIFEST)
        client.put_manifest(repo, referrer_tag(subject.digest, Digest.of(data)), data, MediaType.OCI_MANIFEST)

    def indexed() -> set[Digest]:
        return {
            d.digest for d in client.get_manifest(repo, fallback_tag(subject.digest)).as_index().manifests
        }

    assert indexed() == {kept.digest}
    assert set(referrer_tag_subjects(client.list_tags(repo))) == {fallback_tag(subject.digest)}
    assert repair_fallback_index(client, repo, subject.digest) == 2
    assert indexed() == {kept.digest} | {Digest.of(m.to_bytes()) for m in lost}
    assert repair_fallback_index(client, repo, subject.digest) == 0  # complete: nothing written
