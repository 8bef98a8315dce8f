"""The key-only sigstore bundle v0.3 written by ``sign --bundle-format``: shape, hint, verification."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.digest import Digest
from ecr_oci.errors import VerificationError
from ecr_oci.signing import sigstore_bundle
from ecr_oci.signing.dsse import PAYLOAD_TYPE, Subject
from ecr_oci.signing.sigstore_bundle import (
    BUNDLE_MEDIA_TYPE,
    COSIGN_SIGN_PREDICATE_TYPE,
    key_hint,
    make_bundle,
    verify_bundle,
)

IMAGE = Digest.parse("sha256:" + "17" * 32)
SUBJECT = Subject("127.0.0.1:5000/waggle/hello", IMAGE)

# cosign v2.6.1 `sign --new-bundle-format --key cosign.key`: the public key and the bundle's hint
COSIGN_PUB = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPQYnFy1jCBvYWHJ8jbz8izUFh4wC
/vE/0BminaB9NDxbBUdoKCcuHmo3KiQjFS+jvujpFE+QY2rXTV6kuMc3QQ==
-----END PUBLIC KEY-----
"""
COSIGN_HINT = "nFTzRQeakJlePmrEbaucbsOW9Ra6Y+vlO3WGwtO2Tg4="


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_doctests() -> None:
    assert doctest.testmod(sigstore_bundle).failed == 0


def test_bundle_shape(key: ec.EllipticCurvePrivateKey) -> None:
    document = json.loads(make_bundle(key, SUBJECT))
    assert list(document) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
    assert document["mediaType"] == BUNDLE_MEDIA_TYPE
    assert document["verificationMaterial"] == {"publicKey": {"hint": key_hint(key.public_key())}}
    envelope = document["dsseEnvelope"]
    assert envelope["payloadType"] == PAYLOAD_TYPE
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicateType"] == COSIGN_SIGN_PREDICATE_TYPE
    assert statement["subject"][0]["digest"] == {"sha256": IMAGE.hex}


def test_hint_is_sha256_of_pkix_der() -> None:
    public = serialization.load_pem_public_key(COSIGN_PUB)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_hint(public) == base64.b64encode(hashlib.sha256(der).digest()).decode() == COSIGN_HINT


def test_verify_round_trip_and_failures(key: ec.EllipticCurvePrivateKey) -> None:
    data = make_bundle(key, SUBJECT)
    assert verify_bundle(data, key.public_key(), IMAGE).covers(IMAGE)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    cases = [
        (data, other, IMAGE, "wrong-key"),
        (data, key.public_key(), Digest.of(b"other"), "digest-mismatch"),
        (b"{}", key.public_key(), IMAGE, "malformed"),
        (data.replace(b"v0.3", b"v0.1"), key.public_key(), IMAGE, "malformed"),
    ]
    for bundle, public, digest, reason in cases:
        with pytest.raises(VerificationError) as caught:
            verify_bundle(bundle, public, digest)
        assert caught.value.reason == reason
