"""OCI value types: canonical bytes, strict parsing of what a registry serves, size limits."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from ecr_oci.digest import Digest
from ecr_oci.errors import InputTooLargeError, RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import (
    EMPTY_CONFIG_DIGEST,
    MAX_EMBEDDED_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Index,
    Manifest,
    Platform,
    RawManifest,
    embedded,
    embedded_content,
    parse_config,
)

LAYER = Descriptor(mediaType=MediaType.OCI_LAYER_GZIP, digest=Digest.of(b"layer"), size=5)
CONFIG = Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2)


def test_empty_config_digest_is_the_digest_of_an_empty_object() -> None:
    assert Digest.of(b"{}") == EMPTY_CONFIG_DIGEST


def test_manifest_bytes_are_compact_with_a_fixed_key_order() -> None:
    manifest = Manifest(config=CONFIG, layers=[LAYER], annotations={"a": "1"})
    data = manifest.to_bytes()
    assert b" " not in data and b"\n" not in data
    assert list(json.loads(data)) == ["schemaVersion", "mediaType", "config", "layers", "annotations"]
    assert data.startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"')


def test_manifest_bytes_leave_out_unset_fields() -> None:
    data = json.loads(Manifest(config=CONFIG, layers=[]).to_bytes())
    assert "subject" not in data and "artifactType" not in data and "annotations" not in data
    assert "urls" not in data["config"] and "platform" not in data["config"]


def test_manifest_bytes_are_stable_across_a_parse_round_trip() -> None:
    subject = Descriptor(mediaType=MediaType.OCI_MANIFEST, digest=Digest.of(b"s"), size=1)
    manifest = Manifest(
        artifactType="application/vnd.example",
        config=CONFIG,
        layers=[LAYER],
        subject=subject,
        annotations={"z": "last", "a": "first", "ü": "ünïcode"},
    )
    data = manifest.to_bytes()
    assert data == manifest.to_bytes()
    raw = RawManifest(MediaType.OCI_MANIFEST, Digest.of(data), data)
    assert raw.as_manifest().to_bytes() == data
    assert "ünïcode".encode() in data  # UTF-8, not \u escapes: same bytes as other tools write


def test_index_bytes_keep_platforms_with_the_dotted_alias() -> None:
    platform = Platform(os="windows", architecture="amd64", os_version="10.0.17763")
    entry = Descriptor(mediaType=MediaType.OCI_MANIFEST, digest=Digest.of(b"m"), size=1, platform=platform)
    data = Index(manifests=[entry]).to_bytes()
    assert b'"os.version":"10.0.17763"' in data
    assert b" " not in data
    assert list(json.loads(data)) == ["schemaVersion", "mediaType", "manifests"]
    assert Index.model_validate_json(data).to_bytes() == data


def test_unknown_fields_of_foreign_manifests_survive() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": {**CONFIG.to_json_obj(), "data": "e30="},
        "layers": [],
        "x-vendor": {"k": [1, 2]},
    }
    data = json.dumps(document, separators=(",", ":")).encode()
    manifest = RawManifest(MediaType.OCI_MANIFEST, Digest.of(data), data).as_manifest()
    assert manifest.to_bytes() == data


def test_platform_parse_and_str() -> None:
    assert str(Platform.parse("linux/arm64/v8")) == "linux/arm64/v8"
    assert Platform.parse("linux/amd64") == Platform(os="linux", architecture="amd64")
    assert Platform.parse("linux/amd64").variant is None


def test_raw_manifest_descriptor_points_at_its_bytes() -> None:
    data = Manifest(config=CONFIG, layers=[]).to_bytes()
    raw = RawManifest(MediaType.OCI_MANIFEST, Digest.of(data), data)
    descriptor = raw.descriptor(artifactType="application/vnd.example")
    assert (descriptor.digest, descriptor.size, descriptor.mediaType) == (
        Digest.of(data),
        len(data),
        MediaType.OCI_MANIFEST,
    )
    assert descriptor.artifactType == "application/vnd.example"
    assert not raw.is_index
    assert RawManifest(MediaType.DOCKER_MANIFEST_LIST, raw.digest, data).is_index


def _raw(document: object) -> RawManifest:
    data = json.dumps(document).encode()
    return RawManifest(MediaType.OCI_MANIFEST, Digest.of(data), data)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"schemaVersion": 2, "config": CONFIG.to_json_obj()}, "layers"),
        (
            {"schemaVersion": 2, "config": {**CONFIG.to_json_obj(), "digest": "sha256:short"}, "layers": []},
            "config.digest",
        ),
        (
            {
                "schemaVersion": 2,
                "config": CONFIG.to_json_obj(),
                "layers": [{**LAYER.to_json_obj(), "size": -1}],
            },
            "layers.0.size",
        ),
    ],
)
def test_malformed_manifest_raises_registry_error_naming_the_field(document: object, field: str) -> None:
    raw = _raw(document)
    with pytest.raises(RegistryError) as caught:
        raw.as_manifest(url="http://127.0.0.1:5000/v2/ns/app/manifests/1.0")
    message = str(caught.value)
    assert f"({field}:" in message
    assert str(raw.digest) in message
    assert caught.value.url == "http://127.0.0.1:5000/v2/ns/app/manifests/1.0"


def test_manifest_that_is_not_json_raises_registry_error() -> None:
    raw = RawManifest(MediaType.OCI_MANIFEST, Digest.of(b"<html>"), b"<html>")
    with pytest.raises(RegistryError, match="malformed manifest"):
        raw.as_manifest()


def test_index_without_manifests_raises_registry_error() -> None:
    with pytest.raises(RegistryError, match=r"malformed index .*manifests"):
        _raw({"schemaVersion": 2}).as_index()


def test_oversize_manifest_raises_input_too_large() -> None:
    data = b'{"pad":"' + b"x" * MAX_MANIFEST_BYTES + b'"}'
    raw = RawManifest(MediaType.OCI_MANIFEST, Digest.of(data), data)
    with pytest.raises(InputTooLargeError, match=str(MAX_MANIFEST_BYTES)):
        raw.as_manifest()
    with pytest.raises(InputTooLargeError):
        raw.as_index()


def test_raw_manifest_json_requires_an_object() -> None:
    assert RawManifest(MediaType.OCI_MANIFEST, Digest.of(b"{}"), b"{}").json() == {}
    with pytest.raises(ValueError, match="not a JSON object"):
        RawManifest(MediaType.OCI_MANIFEST, Digest.of(b"[]"), b"[]").json()


def test_parse_config_reads_an_image_config() -> None:
    config = parse_config(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(b"tar"))]},
            }
        ).encode()
    )
    assert config.rootfs.diff_ids == [Digest.of(b"tar")]
    assert config.config is not None and config.config.Entrypoint == ["/bin/sh"]


# -- embedded data (OCI 1.1 descriptor ``data``) -------------------------------------------------


def _described(content: bytes, algorithm: str = "sha256") -> Descriptor:
    digest = Digest.parse(f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}")
    return Descriptor(mediaType="application/json", digest=digest, size=len(content))


def test_small_content_is_embedded_and_read_back() -> None:
    content = b'{"os":"linux","architecture":"arm64"}'
    descriptor = embedded(_described(content), content)
    assert descriptor.data == base64.b64encode(content).decode()
    assert embedded_content(json.loads(descriptor.to_bytes())) == content


def test_sha512_descriptors_are_verified_with_their_own_algorithm() -> None:
    content = b"{}"
    assert embedded_content(embedded(_described(content, "sha512"), content).to_json_obj()) == content


def test_content_over_the_limit_is_not_embedded() -> None:
    content = b"x" * (MAX_EMBEDDED_BYTES + 1)
    assert embedded(_described(content), content).data is None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda d: {**d, "data": base64.b64encode(b'{"os":"evil"}').decode()}, id="other-content"
        ),
        pytest.param(lambda d: {**d, "size": d["size"] + 1}, id="wrong-size"),
        pytest.param(lambda d: {**d, "data": "not base64!"}, id="not-base64"),
        pytest.param(lambda d: {**d, "data": 42}, id="not-a-string"),
        pytest.param(lambda d: {**d, "digest": "sha256:zz"}, id="bad-digest"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "data"}, id="absent"),
    ],
)
def test_embedded_content_that_does_not_match_its_descriptor_is_not_used(tamper: Any) -> None:
    """The inline copy is the manifest author's claim: only the digest makes it content."""
    content = b'{"os":"linux"}'
    assert embedded_content(tamper(embedded(_described(content), content).to_json_obj())) is None
