"""Verify an image's classic cosign signature with a public key, as ``cosign verify --key`` does.

    >>> from ecr_oci.oci.registry import RegistryClient                        # doctest: +SKIP
    >>> from ecr_oci.signing.keys import load_public_key                       # doctest: +SKIP
    >>> public = load_public_key(Path("cosign.pub").read_bytes(), source="cosign.pub")  # +SKIP
    >>> ref = Reference.parse("127.0.0.1:5000/waggle/hello:0.1.0")              # doctest: +SKIP
    >>> verify_image(RegistryClient(ref.registry, insecure=True), ref, public).digest  # +SKIP
    Digest(algorithm='sha256', hex='…')

:func:`verify_image` returns only when one signature layer at ``sha256-<hex>.sig`` passes every check,
in this order (cosign's, plus the identity check containers/image does):

1. the ``dev.cosignproject.cosign/signature`` annotation is base64 of a DER ECDSA signature, and the
   payload blob exists and is small (else ``malformed``);
2. the signature verifies over the exact payload bytes with the key (else ``wrong-key``: another key
   signed it, or the payload was changed);
3. the payload is a simple-signing document (else ``malformed``) whose ``docker-manifest-digest`` is
   the digest the reference resolves to (else ``digest-mismatch``: a signature copied from another
   image, or signed for another digest);
4. with ``identity``, its ``docker-reference`` names that repository (else ``identity-mismatch``).

Otherwise it raises :class:`~ecr_oci.errors.VerificationError` whose ``reason`` is ``no-signature`` (no
``.sig`` tag, or no signature layer in it) or the reason of the signature that got furthest, and whose
message says which check failed for which digest. It never returns a bare ``False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ecr_oci.digest import Digest
from ecr_oci.errors import DigestMismatchError, InvalidReferenceError, NotFound, VerificationError
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing import store
from ecr_oci.signing.keys import PublicKeys, public_key_list, verify_bytes
from ecr_oci.signing.simplesigning import MAX_PAYLOAD_BYTES, SimpleSigning

__all__ = ["VerifiedSignature", "verify_image"]


@dataclass(frozen=True)
class VerifiedSignature:
    """The signature that verified: what it covers and what it claims."""

    reference: str
    digest: Digest
    docker_reference: str
    signature_layer: Digest
    optional: dict[str, Any] | None

    def to_json_obj(self) -> dict[str, object]:
        return {
            "verified": True,
            "reference": self.reference,
            "digest": str(self.digest),
            "dockerReference": self.docker_reference,
            "signatureLayer": str(self.signature_layer),
            "reason": None,
        }


def verify_image(
    client: RegistryClient,
    reference: Reference,
    public_key: PublicKeys,
    *,
    identity: str | None = None,
) -> VerifiedSignature:
    """Check that a valid signature by ``public_key`` covers the digest ``reference`` resolves to.

    ``public_key`` may be several keys, any of which will do (the admission webhook's trusted
    keys): the digest, the signatures and their payloads are then read once, not once per key.
    ``identity`` (``host/namespace/name``) additionally requires the signed ``docker-reference`` to
    name that repository. Raises :class:`~ecr_oci.errors.VerificationError` (see the module
    docstring for the reasons), :class:`~ecr_oci.errors.NotFound` when the tag or digest is not in
    the registry, :class:`~ecr_oci.errors.RegistryError` for registry failures.
    """
    keys = public_key_list(public_key)
    digest = client.manifest_digest(reference.repository, reference.identifier)
    name = f"{reference.repository_url_part}@{digest}"
    try:
        found = store.read_signatures(client, reference.repository, digest)
    except VerificationError as err:
        raise VerificationError(f"{name}: {err}", reason=err.reason) from None
    layers = found.layers if found else []
    if not layers:
        where = f"tag {store.signature_tag(digest)} " + ("has no signature layer" if found else "not found")
        raise VerificationError(
            f"{name} is not signed ({where}); sign it with `ecr-oci sign`", reason="no-signature"
        )
    failures: list[VerificationError] = []
    for layer in layers:
        try:
            signature, payload_bytes = _read_layer(client, reference.repository, layer)
        except VerificationError as err:
            failures.append(err)
            continue
        for key in keys:
            try:
                payload = _check_signed(payload_bytes, signature, key)
                _check_claims(payload, digest=digest, identity=identity)
            except VerificationError as err:
                failures.append(err)
                continue
            return VerifiedSignature(
                reference=name,
                digest=digest,
                docker_reference=payload.docker_reference,
                signature_layer=layer.descriptor.digest,
                optional=dict(payload.optional) if payload.optional is not None else None,
            )
    best = VerificationError.furthest(failures)
    count = f"{len(layers)} signatures checked, none valid; " if len(layers) > 1 else ""
    raise VerificationError(f"{name}: {count}{best}", reason=best.reason)


def _read_layer(client: RegistryClient, repository: str, layer: store.SignatureLayer) -> tuple[bytes, bytes]:
    """Step 1: the signature is well formed and its payload can be read; (signature, payload)."""
    signature = layer.signature_bytes()
    try:
        decode_dss_signature(signature)
    except ValueError:
        raise VerificationError(
            f"signature layer {layer.descriptor.digest}: the signature is not a DER ECDSA "
            "signature (truncated or garbage annotation)",
            reason="malformed",
        ) from None
    if layer.descriptor.size > MAX_PAYLOAD_BYTES:
        raise VerificationError(
            f"signature payload {layer.descriptor.digest} is {layer.descriptor.size} bytes, over "
            f"the {MAX_PAYLOAD_BYTES}-byte limit",
            reason="malformed",
        )
    try:
        payload = client.get_blob(repository, layer.descriptor.digest, max_size=MAX_PAYLOAD_BYTES)
    except (NotFound, DigestMismatchError) as err:
        raise VerificationError(
            f"signature payload {layer.descriptor.digest} cannot be read ({err})", reason="malformed"
        ) from None
    return signature, payload


def _check_signed(payload: bytes, signature: bytes, public_key: ec.EllipticCurvePublicKey) -> SimpleSigning:
    """Steps 2-3a: the signature verifies over the payload with the key, and the payload parses."""
    try:
        verify_bytes(public_key, payload, signature)
    except VerificationError:
        raise VerificationError(
            "the signature does not verify with the given public key: it was made by another key, "
            "or the payload was changed after signing",
            reason="wrong-key",
        ) from None
    return SimpleSigning.parse(payload)


def _check_claims(payload: SimpleSigning, *, digest: Digest, identity: str | None) -> None:
    """Steps 3b-4: the signed payload is about this digest (and this repository, if asked)."""
    if payload.digest != digest:
        raise VerificationError(
            f"a valid signature by this key is for another image ({payload.digest}), not this "
            "digest: the signature was copied from another image or made for another digest",
            reason="digest-mismatch",
        )
    if identity is not None and _repository_of(payload.docker_reference) != _repository_of(identity):
        raise VerificationError(
            f"the signature is for {payload.docker_reference!r}, not {identity!r} (--identity)",
            reason="identity-mismatch",
        )


def _repository_of(docker_reference: str) -> str:
    """``host/ns/name`` of a signed docker-reference (which may carry a tag or digest)."""
    try:
        return Reference.parse(docker_reference).repository_url_part
    except InvalidReferenceError:
        return docker_reference
