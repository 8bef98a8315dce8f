"""Attest an image and verify its attestations, stored exactly as cosign stores them.

    >>> from ecr_oci.signing.keys import load_private_key
    >>> key = load_private_key(open("cosign.key", "rb").read(), b"pw", source="cosign.key")  # doctest: +SKIP
    >>> ref = Reference.parse("127.0.0.1:5000/waggle/hello-sensor:0.1.0")
    >>> client = RegistryClient(ref.registry, insecure=True)                   # doctest: +SKIP
    >>> attest_image(client, ref, key, predicate={"ok": True},
    ...              predicate_type="https://example.com/check/v1").added      # doctest: +SKIP
    True
    >>> verify_attestation(client, ref, key.public_key(),
    ...                    predicate_type="https://example.com/check/v1").predicate  # doctest: +SKIP
    {'ok': True}

Storage (REFERENCE.md "Signatures", and what cosign v2.6.1 writes, checked against a real registry):
the image ``sha256:<hex>`` has its attestations in one OCI image manifest tagged
``sha256-<hex>.att``. Each attestation is one layer: a DSSE envelope blob, media type
``application/vnd.dsse.envelope.v1+json``, annotations ``dev.cosignproject.cosign/signature: ""``
and ``predicateType: <uri>``. The config blob is the same as for the ``.sig`` manifest
(byte-identical to cosign's), and adding a layer is the same read-modify-write
(:func:`ecr_oci.signing.store.append_layer`: re-read after writing, retry on a lost update; a tag
holding garbage is replaced when writing and ``malformed`` when verifying). Attesting the same
statement again with the same key changes nothing (ECDSA signatures are randomised, so we compare
the signed payloads).

Verification follows cosign's rules: the envelope's signature must verify with the key (DSSE
pre-authentication encoding), the *signed* statement must have the requested ``predicateType`` (the
layer annotation is unauthenticated and only helps to find it), and one of its subjects must have
the digest the reference resolves to — an attestation copied to another image's ``.att`` tag fails.
Every failure is a :class:`~ecr_oci.errors.VerificationError` whose ``reason`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.digest import Digest
from ecr_oci.errors import DigestMismatchError, RegistryError, VerificationError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Manifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing.dsse import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    Statement,
    Subject,
    sign_statement,
    verify_envelope,
)
from ecr_oci.signing.keys import PublicKeys, public_key_list
from ecr_oci.signing.store import SIGNATURE_ANNOTATION, append_layer, read_tagged

__all__ = [
    "PREDICATE_TYPE_ANNOTATION",
    "AttestResult",
    "VerifiedAttestation",
    "attest_image",
    "attestation_tag",
    "claimed_predicate_types",
    "verify_attestation",
    "verify_attestations",
]

#: Layer annotation naming the predicate type of an attestation layer (a hint; the statement rules).
PREDICATE_TYPE_ANNOTATION = "predicateType"


def attestation_tag(digest: Digest) -> str:
    """cosign's tag for the attestations of ``digest``.

    >>> attestation_tag(Digest.parse("sha256:" + "ab" * 32))[-12:]
    'abababab.att'
    """
    return f"{digest.tag_form}.att"


@dataclass(frozen=True)
class AttestResult:
    """What :func:`attest_image` did; ``added`` is false when the same attestation was there."""

    reference: str
    digest: Digest
    predicate_type: str
    tag: str
    manifest_digest: Digest
    layer_digest: Digest
    added: bool

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "predicateType": self.predicate_type,
            "tag": self.tag,
            "manifest": str(self.manifest_digest),
            "layer": str(self.layer_digest),
            "added": self.added,
        }


@dataclass(frozen=True)
class VerifiedAttestation:
    """An attestation whose signature, predicate type and subject digest all checked out."""

    reference: str
    digest: Digest
    statement: Statement
    layer_digest: Digest

    @property
    def predicate_type(self) -> str:
        return self.statement.predicate_type

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement.predicate

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "verified": True,
            "reference": self.reference,
            "digest": str(self.digest),
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
            "layer": str(self.layer_digest),
        }


def attest_image(
    client: RegistryClient,
    reference: Reference,
    key: ec.EllipticCurvePrivateKey,
    *,
    predicate: dict[str, Any],
    predicate_type: str,
) -> AttestResult:
    """Sign an in-toto statement about the image ``reference`` resolves to and store it cosign's way.

    ``client`` talks to ``reference.registry``. The statement's subject is
    ``host/ns/name`` at the resolved digest (what cosign writes), so a tag moved later does not
    carry the attestation along. Raises :class:`~ecr_oci.errors.NotFound` when the image is
    missing and :class:`~ecr_oci.errors.RegistryError` for registry failures.
    """
    digest = client.manifest_digest(reference.repository, reference.identifier)
    statement = Statement((Subject(reference.repository_url_part, digest),), predicate_type, predicate)
    envelope = sign_statement(statement, key)
    public_key = key.public_key()
    repository, tag = reference.repository, attestation_tag(digest)
    data = envelope.to_bytes()
    blob = client.push_blob_bytes(repository, data)
    layer = Descriptor(
        mediaType=MediaType.DSSE_ENVELOPE,
        digest=blob.digest,
        size=blob.size,
        annotations={SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type},
    )
    found: list[Digest] = []

    def same(existing: Descriptor) -> bool:
        """This statement, signed by this key, is there already (signatures differ run to run)."""
        if (existing.annotations or {}).get(PREDICATE_TYPE_ANNOTATION) != predicate_type:
            return False
        try:
            other = _fetch_envelope(client, repository, existing)
            if other.payload != envelope.payload:
                return False
            verify_envelope(other, public_key)
        except VerificationError:
            return False
        found.append(existing.digest)
        return True

    added = append_layer(client, repository, tag, layer, is_duplicate=same)
    return AttestResult(
        reference=f"{reference.repository_url_part}@{digest}",
        digest=digest,
        predicate_type=predicate_type,
        tag=tag,
        manifest_digest=client.manifest_digest(repository, tag),
        layer_digest=layer.digest if added else found[-1],
        added=added,
    )


def verify_attestations(
    client: RegistryClient,
    reference: Reference,
    public_key: PublicKeys,
    *,
    predicate_type: str,
) -> list[VerifiedAttestation]:
    """Every attestation of ``predicate_type`` on the image that verifies with ``public_key`` (or
    with any of several keys: the attestations are then read once, not once per key).

    Raises :class:`~ecr_oci.errors.VerificationError` when there is none: ``no-attestation`` (no
    ``.att`` tag, or none of that type), else the reason of the attestation that got furthest —
    ``digest-mismatch`` (made for another image), ``wrong-type`` (the annotation claims the type
    but the signed statement says another), ``wrong-key`` (another key, or a changed payload),
    ``malformed``. :class:`~ecr_oci.errors.NotFound` when the image itself is missing.
    """
    keys = public_key_list(public_key)
    digest = client.manifest_digest(reference.repository, reference.identifier)
    name = f"{reference.repository_url_part}@{digest}"
    tag = attestation_tag(digest)
    manifest = _read_for_verification(client, reference.repository, tag, name=name)
    verified: list[VerifiedAttestation] = []
    failures: list[VerificationError] = []
    seen_types: set[str] = set()
    for layer in manifest.layers:
        claimed = (layer.annotations or {}).get(PREDICATE_TYPE_ANNOTATION)
        if claimed:
            seen_types.add(claimed)
        try:
            envelope = _fetch_envelope(client, reference.repository, layer)
            unverified = envelope.statement().predicate_type
        except VerificationError as err:
            if claimed in (None, predicate_type):
                failures.append(err)
            continue
        seen_types.add(unverified)
        if predicate_type not in (claimed, unverified):
            continue
        by_key: list[VerificationError] = []
        for key in keys:
            try:
                statement = verify_envelope(envelope, key)
                _check_statement(statement, predicate_type=predicate_type, digest=digest)
            except VerificationError as err:
                by_key.append(err)
                continue
            verified.append(VerifiedAttestation(name, digest, statement, layer.digest))
            break
        else:  # one failure per attestation, however many keys were tried
            failures.append(VerificationError.furthest(by_key))
    if verified:
        return verified
    if not failures:
        found = f"; it has {', '.join(sorted(seen_types))}" if seen_types else ""
        raise VerificationError(
            f"{name} has no attestation of type {predicate_type}{found}",
            reason="no-attestation",
        )
    furthest = VerificationError.furthest(failures)
    more = f" ({len(failures)} attestations of that type failed)" if len(failures) > 1 else ""
    raise VerificationError(
        f"attestation of type {predicate_type} on {name}: {furthest}{more}", reason=furthest.reason
    )


def verify_attestation(
    client: RegistryClient,
    reference: Reference,
    public_key: PublicKeys,
    *,
    predicate_type: str,
) -> VerifiedAttestation:
    """The newest valid attestation of ``predicate_type``; see :func:`verify_attestations`."""
    return verify_attestations(client, reference, public_key, predicate_type=predicate_type)[-1]


def claimed_predicate_types(client: RegistryClient, reference: Reference) -> list[str]:
    """The predicate types the layers of the image's ``.att`` manifest are annotated with, in order.

    Unauthenticated (whoever can push can write an annotation): a hint for messages and for
    choosing what to verify, never a verdict. Empty when the image has no ``.att`` tag; raises
    ``VerificationError(reason="malformed")`` when the tag holds something else than an image
    manifest, :class:`~ecr_oci.errors.NotFound` when the image is missing.
    """
    tag = attestation_tag(client.manifest_digest(reference.repository, reference.identifier))
    found = read_tagged(client, reference.repository, tag)
    layers = found.manifest.layers if found else []
    claimed = [(layer.annotations or {}).get(PREDICATE_TYPE_ANNOTATION) for layer in layers]
    return [value for value in claimed if value]


def _check_statement(statement: Statement, *, predicate_type: str, digest: Digest) -> None:
    if statement.predicate_type != predicate_type:
        raise VerificationError(
            f"the layer claims type {predicate_type} but the signed statement is of type "
            f"{statement.predicate_type}",
            reason="wrong-type",
        )
    if not statement.covers(digest):
        about = ", ".join(str(s.digest) for s in statement.subjects)
        raise VerificationError(
            f"the signed statement is about {about}, not {digest} that the reference resolves "
            "to (made for another image, or copied from one)",
            reason="digest-mismatch",
        )


def _fetch_envelope(client: RegistryClient, repository: str, layer: Descriptor) -> Envelope:
    if layer.mediaType != MediaType.DSSE_ENVELOPE:
        raise VerificationError(
            f"attestation layer {layer.digest} has media type {layer.mediaType!r}, expected "
            f"{MediaType.DSSE_ENVELOPE}",
            reason="malformed",
        )
    try:
        data = client.get_blob(repository, layer.digest, max_size=MAX_ENVELOPE_BYTES)
    except (RegistryError, DigestMismatchError) as err:
        raise VerificationError(
            f"cannot read attestation layer {layer.digest}: {err}", reason="malformed"
        ) from None
    return Envelope.parse(data)


def _read_for_verification(client: RegistryClient, repository: str, tag: str, *, name: str) -> Manifest:
    """The ``.att`` manifest; ``no-attestation`` when absent, ``malformed`` when not a manifest."""
    found = read_tagged(client, repository, tag)
    if found is None:
        raise VerificationError(f"{name} has no attestations (no tag {tag})", reason="no-attestation")
    return found.manifest
