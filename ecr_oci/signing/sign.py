"""Sign an image as cosign does: a simple-signing payload per manifest, stored at ``sha256-<hex>.sig``.

    >>> from ecr_oci.oci.registry import RegistryClient                        # doctest: +SKIP
    >>> from ecr_oci.signing.keys import load_private_key                      # doctest: +SKIP
    >>> key = load_private_key(Path("cosign.key").read_bytes(), b"pw", source="cosign.key")  # +SKIP
    >>> client = RegistryClient("127.0.0.1:5000", insecure=True)                # doctest: +SKIP
    >>> signed = sign_image(client, Reference.parse("127.0.0.1:5000/waggle/hello:0.1.0"), key)  # +SKIP
    >>> [str(s.digest) for s in signed]                                         # doctest: +SKIP
    ['sha256:…']

What gets signed: the digest the reference resolves to and, for an index, every manifest it lists,
each once (cosign ``sign --recursive``). A node pulls a platform manifest by digest, and verifiers
such as policy-controller check the digest they are about to run, so each needs its own signature.
The payload's ``docker-reference`` is ``host/namespace/name`` — the repository, as cosign writes it.

Signing twice with the same key adds nothing (see :func:`ecr_oci.signing.store.attach_signature`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.digest import Digest
from ecr_oci.errors import VerificationError
from ecr_oci.oci.models import Descriptor, RawManifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing import sigstore_bundle, store
from ecr_oci.signing.keys import sign_bytes, verify_bytes
from ecr_oci.signing.simplesigning import SimpleSigning

__all__ = ["Signed", "sign_image", "sign_manifest"]


@dataclass(frozen=True)
class Signed:
    """One signed manifest: where its signature is and whether this run added it."""

    reference: str
    digest: Digest
    signature_tag: str
    added: bool
    bundle: Digest | None = None

    def to_json_obj(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "signatureTag": self.signature_tag,
            "added": self.added,
            "bundle": str(self.bundle) if self.bundle else None,
        }


def sign_image(
    client: RegistryClient,
    reference: Reference,
    key: ec.EllipticCurvePrivateKey,
    *,
    bundle_format: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> list[Signed]:
    """Resolve ``reference`` (tag or digest) and sign what it names; see the module docstring.

    ``client`` talks to ``reference.registry``. Raises :class:`~ecr_oci.errors.NotFound` when the
    reference does not exist, :class:`~ecr_oci.errors.RegistryError` for other registry failures.
    """
    raw = client.get_manifest(reference.repository, reference.identifier)
    repository = Reference(registry=reference.registry, repository=reference.repository)
    return sign_manifest(client, repository, raw, key, bundle_format=bundle_format, annotations=annotations)


def sign_manifest(
    client: RegistryClient,
    repository: Reference,
    raw: RawManifest,
    key: ec.EllipticCurvePrivateKey,
    *,
    bundle_format: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> list[Signed]:
    """Sign a manifest that is already in ``repository`` (and its children if it is an index).

    For callers that hold the manifest already, such as push; ``repository`` gives the registry
    and repository (its tag and digest are ignored); ``annotations`` go to the payload's
    ``optional`` (cosign ``sign -a``). Returns one :class:`Signed` per manifest, the top one first.
    Raises :class:`~ecr_oci.errors.RegistryError`.
    """
    identity = repository.repository_url_part
    optional = dict(annotations) if annotations else None
    public_key = key.public_key()

    def already_signed(layer: store.SignatureLayer, payload: bytes) -> bool:
        try:
            verify_bytes(public_key, payload, layer.signature_bytes())
        except VerificationError:
            return False
        return True

    results = []
    for target in _targets(raw):
        payload = SimpleSigning(identity, target.digest, optional).to_bytes()
        added = store.attach_signature(
            client,
            repository.repository,
            target.digest,
            payload,
            sign_bytes(key, payload),
            is_duplicate=already_signed,
        )
        bundle = (
            sigstore_bundle.attach_bundle(
                client, repository.repository, target, key, docker_reference=identity
            )
            if bundle_format
            else None
        )
        results.append(
            Signed(
                reference=f"{identity}@{target.digest}",
                digest=target.digest,
                signature_tag=store.signature_tag(target.digest),
                added=added,
                bundle=bundle,
            )
        )
    return results


def _targets(raw: RawManifest) -> list[Descriptor]:
    """The manifest itself, then each manifest an index lists, every digest once."""
    targets = {raw.digest: raw.descriptor()}
    if raw.is_index:
        for entry in raw.as_index().manifests:
            targets.setdefault(
                entry.digest, Descriptor(mediaType=entry.mediaType, digest=entry.digest, size=entry.size)
            )
    return list(targets.values())
