"""DSSE envelopes holding in-toto statements: the signed unit of an attestation.

    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> key = ec.generate_private_key(ec.SECP256R1())
    >>> subject = Subject("127.0.0.1:5000/waggle/hello", Digest.of(b"image"))
    >>> statement = Statement((subject,), "https://example.com/test/v1", {"ok": True})
    >>> envelope = sign_statement(statement, key)
    >>> verify_envelope(Envelope.parse(envelope.to_bytes()), key.public_key()).predicate
    {'ok': True}

Formats (REFERENCE.md, "Signatures"; DSSE spec v1.0 "Protocol"; in-toto attestation spec v1
"Statement"):

- The envelope is ``{"payloadType", "payload", "signatures": [{"keyid", "sig"}]}`` with the payload
  and each signature in standard base64 with padding. The signature is ECDSA-SHA256 (ASN.1 DER) over
  the *pre-authentication encoding* ``"DSSEv1 <len(type)> <type> <len(body)> <body>"`` — never over
  the bare payload, so a payload cannot be replayed under another type.
- ``keyid`` is written empty, as cosign v2 writes it for key-based attestations: the verifier is
  told which key to use; a key id in the envelope would be an unauthenticated hint anyway.
- The payload is an in-toto Statement v1 holding only ``_type``, ``subject``, ``predicateType`` and
  ``predicate``. cosign 2.6 still writes ``_type`` ``https://in-toto.io/Statement/v0.1``; both are
  read (the layout is the same).

Verification raises :class:`~ecr_oci.errors.VerificationError`, never returns ``False``, with a
``reason`` of ``malformed`` (not an envelope, bad base64, not a statement) or ``wrong-key`` (no
signature verifies with the key: signed by another key, or the payload was changed after signing).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError, VerificationError
from ecr_oci.signing.keys import sign_bytes, verify_bytes

__all__ = [
    "ACCEPTED_STATEMENT_TYPES",
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "Statement",
    "Subject",
    "pae",
    "sign_statement",
    "verify_envelope",
]

#: DSSE ``payloadType`` of an in-toto statement (in-toto attestation spec, "Envelope").
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The ``_type`` we write.
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: The ``_type`` values we read: v1, and v0.1 which cosign 2.x writes.
ACCEPTED_STATEMENT_TYPES = frozenset({STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1"})
#: Envelopes bigger than this are refused before parsing (a statement is a few KiB).
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes that are signed.

        >>> pae("t", b"hi")
        b'DSSEv1 1 t 2 hi'

    Lengths are of the UTF-8 bytes, in ASCII decimal (DSSE spec "Signature definition").
    """
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Subject:
    """One artifact a statement is about: a name (``host/ns/name``) and its digest."""

    name: str
    digest: Digest

    def to_json_obj(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {self.digest.algorithm: self.digest.hex}}


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1: ``subjects`` are what it is about, ``predicate`` what it says."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [subject.to_json_obj() for subject in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        """Compact JSON, keys in spec order: these bytes are the DSSE payload that gets signed."""
        return json.dumps(self.to_json_obj(), separators=(",", ":"), ensure_ascii=False).encode()

    def covers(self, digest: Digest) -> bool:
        """Whether one of the subjects has exactly this digest (name is not authenticated)."""
        return any(subject.digest == digest for subject in self.subjects)

    @classmethod
    def parse(cls, payload: bytes) -> Statement:
        """Read a statement; raise ``VerificationError(reason="malformed")`` saying what is wrong."""
        document = _json_object(payload, what="attestation payload")
        if document.get("_type") not in ACCEPTED_STATEMENT_TYPES:
            raise _malformed(f"payload is not an in-toto statement (_type {document.get('_type')!r})")
        predicate_type = document.get("predicateType")
        predicate = document.get("predicate", {})
        subjects = document.get("subject")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise _malformed("in-toto statement has no predicateType")
        if not isinstance(predicate, dict):
            raise _malformed("in-toto statement predicate is not a JSON object")
        if not isinstance(subjects, list) or not subjects:
            raise _malformed("in-toto statement has no subject")
        return cls(tuple(_subject(item) for item in subjects), predicate_type, predicate)


@dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope; :meth:`parse` and :meth:`to_bytes` are exact inverses for our output."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode(),
                "signatures": [
                    {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures
                ],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def parse(cls, data: bytes) -> Envelope:
        """Read an envelope; raise ``VerificationError(reason="malformed")`` saying what is wrong."""
        if len(data) > MAX_ENVELOPE_BYTES:
            raise _malformed(f"DSSE envelope is over {MAX_ENVELOPE_BYTES} bytes")
        document = _json_object(data, what="DSSE envelope")
        payload_type = document.get("payloadType")
        signatures = document.get("signatures")
        if not isinstance(payload_type, str):
            raise _malformed("DSSE envelope has no payloadType")
        if not isinstance(signatures, list) or not signatures:
            raise _malformed("DSSE envelope has no signatures")
        parsed = []
        for item in signatures:
            if not isinstance(item, dict):
                raise _malformed("DSSE envelope signature is not a JSON object")
            keyid = item.get("keyid", "")
            parsed.append(
                EnvelopeSignature(
                    keyid=keyid if isinstance(keyid, str) else "",
                    sig=_b64(item.get("sig"), what="DSSE signature"),
                )
            )
        return cls(payload_type, _b64(document.get("payload"), what="DSSE payload"), tuple(parsed))

    def statement(self) -> Statement:
        """The payload as a statement, **unverified** — for choosing which envelope to verify."""
        self._check_payload_type()
        return Statement.parse(self.payload)

    def _check_payload_type(self) -> None:
        if self.payload_type != PAYLOAD_TYPE:
            raise _malformed(f"DSSE payloadType is {self.payload_type!r}, expected {PAYLOAD_TYPE!r}")


def sign_statement(statement: Statement, key: ec.EllipticCurvePrivateKey) -> Envelope:
    """Wrap ``statement`` in a DSSE envelope signed by ``key`` (one signature, empty keyid)."""
    payload = statement.to_bytes()
    signature = sign_bytes(key, pae(PAYLOAD_TYPE, payload))
    return Envelope(PAYLOAD_TYPE, payload, (EnvelopeSignature("", signature),))


def verify_envelope(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> Statement:
    """The statement of ``envelope`` if one of its signatures verifies with ``public_key``.

    Raises ``VerificationError`` with reason ``malformed`` (wrong payloadType, not a statement)
    or ``wrong-key``. The statement is parsed only after the signature checked out.
    """
    envelope._check_payload_type()
    signed = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        try:
            verify_bytes(public_key, signed, signature.sig)
        except VerificationError:
            continue
        return Statement.parse(envelope.payload)
    raise VerificationError(
        "no signature of the DSSE envelope verifies with the given public key: it was signed "
        "by another key, or its payload was changed after signing",
        reason="wrong-key",
    )


def _subject(item: object) -> Subject:
    if not isinstance(item, dict) or not isinstance(item.get("digest"), dict):
        raise _malformed("in-toto statement subject has no digest")
    name = item.get("name", "")
    digests: Mapping[str, object] = item["digest"]
    for algorithm in ("sha256", "sha512"):
        value = digests.get(algorithm)
        if isinstance(value, str):
            try:
                return Subject(name if isinstance(name, str) else "", Digest.parse(f"{algorithm}:{value}"))
            except InvalidReferenceError:
                raise _malformed(f"in-toto statement subject digest {value[:80]!r} is invalid") from None
    raise _malformed("in-toto statement subject has no sha256 digest")


def _json_object(data: bytes, *, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _malformed(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise _malformed(f"{what} is not a JSON object")
    return document


def _b64(value: object, *, what: str) -> bytes:
    """Standard base64 with padding (DSSE); also accepts URL-safe, which the spec allows readers to."""
    if not isinstance(value, str) or not value:
        raise _malformed(f"{what} is missing")
    try:
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not valid base64") from None


def _malformed(message: str) -> VerificationError:
    return VerificationError(message, reason="malformed")
