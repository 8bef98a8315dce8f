"""The simple-signing payload and the ``.sig`` config blob: byte-exact against what cosign v2.6.1 writes."""

from __future__ import annotations

import doctest

import pytest

from ecr_oci.digest import Digest
from ecr_oci.errors import VerificationError
from ecr_oci.oci.models import Descriptor
from ecr_oci.signing import simplesigning, store
from ecr_oci.signing.simplesigning import SimpleSigning
from ecr_oci.signing.store import SIMPLESIGNING_MEDIA_TYPE, config_bytes, signature_tag

DIGEST = Digest.parse("sha256:e3f0b33ec606560ee4627ad61a0e3192d6680b969fc0040fa7d069f89c8745f2")

# `cosign sign --key cosign.key --tlog-upload=false 127.0.0.1:5731/t/img@<DIGEST>` (cosign v2.6.1):
# the layer blob and the config blob of the .sig manifest it wrote, as served by the registry.
COSIGN_PAYLOAD = (
    b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5731/t/img"},"image":{"docker-manifest-'
    b'digest":"sha256:e3f0b33ec606560ee4627ad61a0e3192d6680b969fc0040fa7d069f89c8745f2"},"type":"cosign'
    b' container image signature"},"optional":null}'
)
COSIGN_CONFIG_ONE_LAYER = (
    b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}]'
    b',"os":"","rootfs":{"type":"layers","diff_ids":["sha256:da540d9d15dcca4cf67870c6ef524d8c10e2898e70'
    b'5f072fb738d78b030f9412"]},"config":{}}'
)
COSIGN_CONFIG_DIGEST = "sha256:37c031b2c18073958628d9fd7d16e175cf3955f65d4d373b52f513d7fbee87be"
# and `cosign generate -a zeta=1 -a 'alpha=<&> é' REF@DIGEST`: annotations sorted, HTML escaped
COSIGN_ANNOTATED_TAIL = b'"optional":{"alpha":"\\u003c\\u0026\\u003e \xc3\xa9","zeta":"1"}}'


def test_doctests() -> None:
    assert doctest.testmod(simplesigning).failed == 0
    assert doctest.testmod(store).failed == 0


def test_payload_is_byte_exact() -> None:
    assert SimpleSigning("127.0.0.1:5731/t/img", DIGEST).to_bytes() == COSIGN_PAYLOAD
    assert Digest.of(COSIGN_PAYLOAD) == Digest.parse(
        "sha256:da540d9d15dcca4cf67870c6ef524d8c10e2898e705f072fb738d78b030f9412"
    )


def test_payload_with_annotations_matches_go() -> None:
    payload = SimpleSigning("127.0.0.1:5731/t/img", DIGEST, {"zeta": "1", "alpha": "<&> é"})
    assert payload.to_bytes().endswith(COSIGN_ANNOTATED_TAIL)
    assert SimpleSigning.parse(payload.to_bytes()) == payload


def test_parse_round_trip() -> None:
    parsed = SimpleSigning.parse(COSIGN_PAYLOAD)
    assert parsed == SimpleSigning("127.0.0.1:5731/t/img", DIGEST, None)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not json", "not JSON"),
        (b"[]", "no 'critical'"),
        (COSIGN_PAYLOAD.replace(b"cosign container image signature", b"atomic"), "payload type"),
        (COSIGN_PAYLOAD.replace(b'"docker-reference"', b'"docker-ref"'), "docker-reference"),
        (COSIGN_PAYLOAD.replace(b"sha256:e3f0", b"sha256:XXXX"), "not a digest"),
        (COSIGN_PAYLOAD.replace(b'"optional":null', b'"optional":"x"'), "'optional'"),
        (b" " * (300 * 1024), "over"),
    ],
    ids=["not-json", "not-object", "wrong-type", "no-reference", "bad-digest", "bad-optional", "huge"],
)
def test_parse_rejects(data: bytes, words: str) -> None:
    with pytest.raises(VerificationError) as caught:
        SimpleSigning.parse(data)
    assert caught.value.reason == "malformed"
    assert words in str(caught.value)


def test_signature_manifest_config_is_byte_exact() -> None:
    layer = Descriptor(mediaType=SIMPLESIGNING_MEDIA_TYPE, digest=Digest.of(COSIGN_PAYLOAD), size=236)
    assert config_bytes([layer]) == COSIGN_CONFIG_ONE_LAYER
    assert str(Digest.of(config_bytes([layer]))) == COSIGN_CONFIG_DIGEST
    two = config_bytes([layer, layer])
    assert two.count(b'{"created":"0001-01-01T00:00:00Z"}') == 2 and len(two) == 342


def test_signature_tag() -> None:
    assert signature_tag(DIGEST) == f"sha256-{DIGEST.hex}.sig"
