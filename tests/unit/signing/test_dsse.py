"""DSSE envelopes and in-toto statements: exact bytes, round trips, and every way verification fails."""

from __future__ import annotations

import base64
import doctest
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.digest import Digest
from ecr_oci.errors import VerificationError
from ecr_oci.signing import dsse
from ecr_oci.signing.dsse import (
    PAYLOAD_TYPE,
    Envelope,
    EnvelopeSignature,
    Statement,
    Subject,
    pae,
    sign_statement,
    verify_envelope,
)
from ecr_oci.signing.keys import generate_key_pair, load_private_key, load_public_key, sign_bytes

IMAGE = Digest.parse("sha256:" + "4e" * 32)
NAME = "127.0.0.1:5000/waggle/hello"
TYPE = "https://example.com/test/v1"

# Captured from `cosign attest --key cosign.key --type https://example.com/t/v1 --predicate p.json
# --tlog-upload=false` (cosign v2.6.1) against a local registry: the layer blob and the public key.
COSIGN_PUB = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2f9KsJ2L+k91V91yB7+31fCrEQZT
On6rkjcJOq+Iiz3US7Sn1uXxo+60c41iRIqMFFOb2aZ/axrOPy0Lts2qaA==
-----END PUBLIC KEY-----
"""
COSIGN_ENVELOPE = (
    b'{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9T'
    b"dGF0ZW1lbnQvdjAuMSIsInByZWRpY2F0ZVR5cGUiOiJodHRwczovL2V4YW1wbGUuY29tL3QvdjEiLCJzdWJqZWN0IjpbeyJuYW1l"
    b"IjoiMTI3LjAuMC4xOjU1MzU1L2Jhc2UvYnVzeWJveCIsImRpZ2VzdCI6eyJzaGEyNTYiOiI0ZWQxYjU5MmRmYjdkNWM2OWRhMmU3"
    b"MjI2ZjA2MmFkY2RjMGM0MzBmYTEzN2IwODgyNjYyNWU0YmJiZWFmZDA2In19XSwicHJlZGljYXRlIjp7ImhlbGxvIjoid29ybGQi"
    b'fX0=","signatures":[{"keyid":"","sig":"MEUCIQD8zQ9Oi27vyntJZzrLuyUYVJOcGRJJRGtiX3FOdQg2cQIgeNzdDB5HL3'
    b'CQgQtopzssUKhyHLCeCvErDXlEpd9Mbus="}]}'
)
COSIGN_IMAGE = Digest.parse("sha256:4ed1b592dfb7d5c69da2e7226f062adcdc0c430fa137b08826625e4bbbeafd06")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def statement(predicate: dict[str, object] | None = None) -> Statement:
    return Statement((Subject(NAME, IMAGE),), TYPE, predicate if predicate is not None else {"a": 1})


def reasons(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> str:
    with pytest.raises(VerificationError) as caught:
        verify_envelope(envelope, public_key)
    return caught.value.reason


def test_module_examples_run() -> None:
    assert doctest.testmod(dsse).failed == 0


def test_pae_matches_the_dsse_spec_test_vector() -> None:
    # DSSE spec, protocol.md "Test Vectors"
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    assert pae("\u00e9", b"x") == b"DSSEv1 2 \xc3\xa9 1 x"  # lengths count UTF-8 bytes


def test_statement_is_compact_json_with_exactly_the_four_keys_in_order() -> None:
    data = statement().to_bytes()
    assert data == (
        b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"127.0.0.1:5000/waggle/hello",'
        b'"digest":{"sha256":"' + IMAGE.hex.encode() + b'"}}],"predicateType":"https://example.com/test/v1",'
        b'"predicate":{"a":1}}'
    )
    assert list(json.loads(data)) == ["_type", "subject", "predicateType", "predicate"]
    assert Statement.parse(data) == statement()


def test_envelope_is_what_cosign_writes(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_statement(statement(), key)
    document = json.loads(envelope.to_bytes())
    assert list(document) == ["payloadType", "payload", "signatures"]
    assert document["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(document["payload"], validate=True) == statement().to_bytes()
    [signature] = document["signatures"]
    assert signature["keyid"] == ""  # cosign v2 writes an empty keyid for key-based attestations
    assert base64.b64decode(signature["sig"], validate=True)[0] == 0x30  # ASN.1 DER SEQUENCE
    assert Envelope.parse(envelope.to_bytes()) == envelope


def test_round_trip_verifies(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = Envelope.parse(sign_statement(statement({"x": [1, 2]}), key).to_bytes())
    verified = verify_envelope(envelope, key.public_key())
    assert verified.predicate == {"x": [1, 2]}
    assert verified.covers(IMAGE)
    assert not verified.covers(Digest.of(b"another image"))


def test_keys_from_cosign_key_files_sign_and_verify() -> None:
    pair = generate_key_pair(b"pw")
    key = load_private_key(pair.private_pem, b"pw", source="cosign.key")
    public = load_public_key(pair.public_pem, source="cosign.pub")
    assert verify_envelope(sign_statement(statement(), key), public) == statement()


def test_verifies_an_envelope_cosign_wrote() -> None:
    """cosign 2.6 writes ``_type`` Statement/v0.1; the layout is the same and we read it."""
    public = load_public_key(COSIGN_PUB, source="cosign.pub")
    verified = verify_envelope(Envelope.parse(COSIGN_ENVELOPE), public)
    assert verified.predicate_type == "https://example.com/t/v1"
    assert verified.predicate == {"hello": "world"}
    assert verified.subjects == (Subject("127.0.0.1:55355/base/busybox", COSIGN_IMAGE),)


def test_cosign_envelope_fails_with_another_key(key: ec.EllipticCurvePrivateKey) -> None:
    assert reasons(Envelope.parse(COSIGN_ENVELOPE), key.public_key()) == "wrong-key"


def test_another_key_is_wrong_key(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    assert reasons(sign_statement(statement(), key), other.public_key()) == "wrong-key"


def test_tampered_payload_fails(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = sign_statement(statement({"approved": False}), key)
    tampered = Envelope(PAYLOAD_TYPE, statement({"approved": True}).to_bytes(), envelope.signatures)
    assert reasons(tampered, key.public_key()) == "wrong-key"


def test_signature_over_the_bare_payload_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    """Only the PAE is signed: a signature over the payload alone must not verify."""
    payload = statement().to_bytes()
    bare = Envelope(PAYLOAD_TYPE, payload, (EnvelopeSignature("", sign_bytes(key, payload)),))
    assert reasons(bare, key.public_key()) == "wrong-key"


def test_any_one_good_signature_is_enough(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    mine = sign_statement(statement(), key)
    theirs = sign_statement(statement(), other)
    both = Envelope(PAYLOAD_TYPE, mine.payload, (*theirs.signatures, *mine.signatures))
    assert verify_envelope(both, key.public_key()) == statement()


def test_another_payload_type_is_malformed(key: ec.EllipticCurvePrivateKey) -> None:
    payload = statement().to_bytes()
    signature = sign_bytes(key, pae("application/json", payload))
    envelope = Envelope("application/json", payload, (EnvelopeSignature("", signature),))
    assert reasons(envelope, key.public_key()) == "malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}',
        b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"!!"}]}',
        b'{"payloadType":"application/vnd.in-toto+json","payload":"%%%","signatures":[{"sig":"MEUC"}]}',
        b'{"payload":"e30=","signatures":[{"sig":"MEUC"}]}',
        b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":["MEUC"]}',
    ],
    ids=[
        "not-json",
        "array",
        "no-signatures",
        "bad-sig-base64",
        "bad-payload-base64",
        "no-type",
        "signature-not-object",
    ],
)
def test_malformed_envelopes_are_refused(data: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        Envelope.parse(data)
    assert caught.value.reason == "malformed"


def test_oversized_envelope_is_refused_before_parsing() -> None:
    with pytest.raises(VerificationError, match="over"):
        Envelope.parse(b" " * (dsse.MAX_ENVELOPE_BYTES + 1))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"_type": "https://example.com/other", "subject": [], "predicateType": TYPE}, "not an in-toto"),
        ({"_type": dsse.STATEMENT_TYPE, "subject": [], "predicateType": TYPE}, "no subject"),
        ({"_type": dsse.STATEMENT_TYPE, "subject": [{"name": "x"}], "predicateType": TYPE}, "no digest"),
        (
            {"_type": dsse.STATEMENT_TYPE, "subject": [{"digest": {"md5": "00"}}], "predicateType": TYPE},
            "no sha256",
        ),
        (
            {"_type": dsse.STATEMENT_TYPE, "subject": [{"digest": {"sha256": "abc"}}], "predicateType": TYPE},
            "invalid",
        ),
        ({"_type": dsse.STATEMENT_TYPE, "subject": [{"digest": {"sha256": IMAGE.hex}}]}, "predicateType"),
        (
            {
                "_type": dsse.STATEMENT_TYPE,
                "subject": [{"digest": {"sha256": IMAGE.hex}}],
                "predicateType": TYPE,
                "predicate": [1],
            },
            "not a JSON object",
        ),
    ],
)
def test_malformed_statements_are_refused(document: dict[str, object], message: str) -> None:
    with pytest.raises(VerificationError, match=message) as caught:
        Statement.parse(json.dumps(document).encode())
    assert caught.value.reason == "malformed"


def test_malformed_statement_is_reported_only_after_the_signature_checks(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """A signed non-statement is malformed; an unsigned one is wrong-key (not parsed at all)."""
    payload = b'{"not": "a statement"}'
    signed = Envelope(
        PAYLOAD_TYPE, payload, (EnvelopeSignature("", sign_bytes(key, pae(PAYLOAD_TYPE, payload))),)
    )
    assert reasons(signed, key.public_key()) == "malformed"
    other = ec.generate_private_key(ec.SECP256R1())
    assert reasons(signed, other.public_key()) == "wrong-key"


def test_sha512_subjects_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    digest = Digest.parse("sha512:" + "ab" * 64)
    made = Statement((Subject(NAME, digest),), TYPE, {})
    assert verify_envelope(sign_statement(made, key), key.public_key()).covers(digest)
