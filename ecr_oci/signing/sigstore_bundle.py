"""The sigstore bundle v0.3 that ``sign --bundle-format`` adds next to the classic ``.sig``.

    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> key = ec.generate_private_key(ec.SECP256R1())
    >>> subject = Subject("127.0.0.1:5000/waggle/hello", Digest.of(b"image"))
    >>> data = make_bundle(key, subject)
    >>> verify_bundle(data, key.public_key(), subject.digest).predicate_type
    'https://sigstore.dev/cosign/sign/v1'

Format: what cosign v2.6.1 ``sign --new-bundle-format --key`` writes, read from its source
(``cmd/cosign/cli/sign/sign.go`` ``signDigestBundle``, ``pkg/oci/remote/write.go``
``WriteAttestationNewBundleFormat``) and from a registry it wrote to:

- the bundle is JSON ``{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
  "verificationMaterial": {"publicKey": {"hint": base64(sha256(PKIX DER))}}, "dsseEnvelope": …}``
  (sigstore protobuf-specs ``Bundle``, key-only: no certificate, no transparency-log entry);
- the envelope's payload is an in-toto statement about the image digest with predicate type
  ``https://sigstore.dev/cosign/sign/v1`` and no predicate. cosign verifies image bundles only in this
  DSSE form ("bundle does not contain a DSSE envelope" otherwise), so we do not write the
  ``messageSignature`` form that ``sign-blob`` uses;
- it is stored as a referrer: an OCI manifest with ``artifactType`` the bundle media type, the empty
  config, one layer (the bundle) and the annotations ``dev.sigstore.bundle.content: dsse-envelope`` and
  ``dev.sigstore.bundle.predicateType``.

Verifiers that read it: cosign ``verify --new-bundle-format --trusted-root`` (a trusted root is required
even for keys; an empty one does), cosign v3, Kyverno's ``SigstoreBundle`` type. REFERENCE.md: always
write the classic ``.sig`` as well; this bundle is only in addition.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.digest import Digest
from ecr_oci.errors import Error, VerificationError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci import referrers
from ecr_oci.oci.models import EMPTY_CONFIG_DIGEST, Descriptor, Manifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.signing.dsse import Envelope, Statement, Subject, sign_statement, verify_envelope

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "COSIGN_SIGN_PREDICATE_TYPE",
    "Subject",
    "attach_bundle",
    "key_hint",
    "make_bundle",
    "verify_bundle",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: The predicate type of an image signature in bundle form (cosign's ``CosignSignPredicateType``).
COSIGN_SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
_EMPTY = Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2)
#: A key-only bundle is under 2 KiB; refuse to read big ones.
_MAX_BUNDLE_BYTES = 1 << 20


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """``verificationMaterial.publicKey.hint``: base64 of the SHA-256 of the PKIX DER key, as cosign."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def make_bundle(key: ec.EllipticCurvePrivateKey, subject: Subject) -> bytes:
    """A key-only bundle v0.3 signing "``subject`` is signed" (an in-toto statement in DSSE)."""
    statement = Statement((subject,), COSIGN_SIGN_PREDICATE_TYPE, {})
    envelope = json.loads(sign_statement(statement, key).to_bytes())
    document = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(key.public_key())}},
        "dsseEnvelope": envelope,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def verify_bundle(data: bytes, public_key: ec.EllipticCurvePublicKey, digest: Digest) -> Statement:
    """The statement of a bundle that ``public_key`` signed about ``digest``.

    Raises ``VerificationError``: ``malformed`` (not a v0.3 DSSE bundle, wrong predicate type),
    ``wrong-key`` (no signature by this key) or ``digest-mismatch`` (about another image).
    """
    document = _bundle_object(data)
    envelope = Envelope.parse(json.dumps(document["dsseEnvelope"]).encode())
    statement = verify_envelope(envelope, public_key)
    if statement.predicate_type != COSIGN_SIGN_PREDICATE_TYPE:
        raise VerificationError(
            f"bundle predicate type is {statement.predicate_type!r}, expected {COSIGN_SIGN_PREDICATE_TYPE!r}",
            reason="malformed",
        )
    if not statement.covers(digest):
        raise VerificationError(f"the bundle is about another image, not {digest}", reason="digest-mismatch")
    return statement


def attach_bundle(
    client: RegistryClient,
    repository: str,
    subject: Descriptor,
    key: ec.EllipticCurvePrivateKey,
    *,
    docker_reference: str,
) -> Digest:
    """Store a bundle for ``subject`` as a referrer; returns the referrer manifest's digest.

    Idempotent: when a bundle referrer that this key signed about ``subject`` exists, its digest is
    returned and nothing is written. Raises :class:`~ecr_oci.errors.RegistryError`.
    """
    existing = _existing(client, repository, subject.digest, key.public_key())
    if existing is not None:
        return existing
    data = make_bundle(key, Subject(docker_reference, subject.digest))
    layer = client.push_blob_bytes(repository, data)
    client.push_blob_bytes(repository, b"{}")
    manifest = Manifest(
        artifactType=BUNDLE_MEDIA_TYPE,
        config=_EMPTY,
        layers=[layer.model_copy(update={"mediaType": BUNDLE_MEDIA_TYPE})],
        subject=Descriptor(mediaType=subject.mediaType, digest=subject.digest, size=subject.size),
        annotations={
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": COSIGN_SIGN_PREDICATE_TYPE,
        },
    )
    return referrers.attach(client, repository, manifest).digest


def _existing(
    client: RegistryClient, repository: str, digest: Digest, public_key: ec.EllipticCurvePublicKey
) -> Digest | None:
    """A bundle referrer of ``digest`` that ``public_key`` signed, if there is one."""
    hint = key_hint(public_key)
    found = referrers.list_referrers(client, repository, digest, artifact_type=BUNDLE_MEDIA_TYPE)
    for descriptor in found:
        try:
            manifest = client.get_manifest(repository, descriptor.digest).as_manifest()
            if len(manifest.layers) != 1 or manifest.layers[0].size > _MAX_BUNDLE_BYTES:
                continue
            data = client.get_blob(repository, manifest.layers[0].digest)
            public = _bundle_object(data)["verificationMaterial"].get("publicKey")
            if not isinstance(public, dict) or public.get("hint") != hint:
                continue
            verify_bundle(data, public_key, digest)
        except Error:
            continue  # someone else's or a broken bundle: not ours, keep looking
        return descriptor.digest
    return None


def _bundle_object(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        document = None
    if (
        not isinstance(document, dict)
        or document.get("mediaType") != BUNDLE_MEDIA_TYPE
        or not isinstance(document.get("verificationMaterial"), dict)
        or not isinstance(document.get("dsseEnvelope"), dict)
    ):
        raise VerificationError(
            f"not a key-only sigstore bundle v0.3 with a DSSE envelope ({BUNDLE_MEDIA_TYPE})",
            reason="malformed",
        )
    return document
