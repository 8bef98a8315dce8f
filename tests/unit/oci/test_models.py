"""OCI value types: canonical bytes, strict parsing of what a registry serves, size limits."""

from __future__ import annotations

import json

import pytest

from ecr_oci.digest import Digest
from ecr_oci.errors import InputTooLargeError, RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import (
    EMPTY_CONFIG_DIGEST,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Index,
    Manifest,
    Platform,
    RawManifest,
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
