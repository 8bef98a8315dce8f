"""Where classic cosign signatures live: the ``sha256-<hex>.sig`` image manifest next to the image.

    >>> signature_tag(Digest.parse("sha256:" + "ab" * 32))
    'sha256-abababababababababababababababababababababababababababababababab.sig'
    >>> from ecr_oci.oci.registry import RegistryClient                       # doctest: +SKIP
    >>> client = RegistryClient("127.0.0.1:5000", insecure=True)               # doctest: +SKIP
    >>> found = read_signatures(client, "waggle/hello", digest)               # doctest: +SKIP
    >>> [layer.signature for layer in found.layers]                            # doctest: +SKIP
    ['MEUCIQ…']

Layout (REFERENCE.md "Signatures", and what cosign v2.6.1 writes, checked against a registry): an OCI
image manifest tagged ``sha256-<hex of the signed digest>.sig``; each signature is one layer of media
type ``application/vnd.dev.cosign.simplesigning.v1+json`` whose blob is the payload and whose
annotation ``dev.cosignproject.cosign/signature`` is the base64 DER signature. The config is the image
config go-containerregistry builds for an empty image with those layers appended (empty os and
architecture, the zero time, one history entry and one diff_id per layer); we write the same bytes.

More signatures are more layers of the same manifest, so adding one is a read-modify-write of a tag.
Two concurrent signers can lose an update; :func:`append_layer` reads back after writing and tries
again, as :func:`ecr_oci.oci.referrers.attach` does for the referrers fallback index. Attestations
(``sha256-<hex>.att``) have the same layout, so :func:`read_tagged` and :func:`append_layer` serve both.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

from ecr_oci.digest import Digest
from ecr_oci.errors import NotFound, RegistryError, VerificationError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Manifest, RawManifest
from ecr_oci.oci.registry import RegistryClient

__all__ = [
    "SIGNATURE_ANNOTATION",
    "SIMPLESIGNING_MEDIA_TYPE",
    "SignatureLayer",
    "SignatureManifest",
    "append_layer",
    "attach_signature",
    "config_bytes",
    "read_signatures",
    "read_tagged",
    "signature_tag",
]

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_ATTACH_ATTEMPTS = 5

#: ``is_duplicate(layer, payload)``: whether an existing layer already holds this signature.
DuplicateCheck = Callable[["SignatureLayer", bytes], bool]


def signature_tag(subject: Digest) -> str:
    """The tag cosign stores the signatures of ``subject`` under: ``sha256-<hex>.sig``."""
    return f"{subject.tag_form}.sig"


@dataclass(frozen=True)
class SignatureLayer:
    """One signature: its payload blob's descriptor and the raw annotation (``None`` if absent)."""

    descriptor: Descriptor
    signature: str | None

    def signature_bytes(self) -> bytes:
        """The DER signature; raises ``VerificationError(reason="malformed")`` if it is not base64."""
        if not self.signature:
            raise VerificationError(
                f"signature layer {self.descriptor.digest} has no {SIGNATURE_ANNOTATION} annotation",
                reason="malformed",
            )
        try:
            return base64.b64decode(self.signature, validate=True)
        except ValueError:
            raise VerificationError(
                f"signature layer {self.descriptor.digest}: the {SIGNATURE_ANNOTATION} annotation "
                f"is not base64 ({self.signature[:24]!r}…)",
                reason="malformed",
            ) from None


@dataclass(frozen=True)
class SignatureManifest:
    """The ``.sig`` manifest as stored, and its simple-signing layers (other layers are skipped)."""

    raw: RawManifest
    manifest: Manifest

    @property
    def layers(self) -> list[SignatureLayer]:
        return [
            SignatureLayer(layer, (layer.annotations or {}).get(SIGNATURE_ANNOTATION))
            for layer in self.manifest.layers
            if layer.mediaType == SIMPLESIGNING_MEDIA_TYPE
        ]


def read_signatures(client: RegistryClient, repository: str, subject: Digest) -> SignatureManifest | None:
    """The signature manifest of ``subject``, or ``None`` when it has none.

    Raises ``VerificationError(reason="malformed")`` when the tag holds something that is not an
    image manifest, and :class:`~ecr_oci.errors.RegistryError` for registry failures.
    """
    return read_tagged(client, repository, signature_tag(subject))


def read_tagged(client: RegistryClient, repository: str, tag: str) -> SignatureManifest | None:
    """The cosign-style manifest at ``tag`` (``.sig`` or ``.att``), or ``None`` when absent.

    Raises ``VerificationError(reason="malformed")`` when the tag holds something that is not an
    image manifest (the message says "signature manifest" or "attestation manifest" by the tag's
    suffix), and :class:`~ecr_oci.errors.RegistryError` for registry failures.
    """
    try:
        raw = client.get_manifest(repository, tag)
    except NotFound:
        return None
    where = f"{client.host}/{repository}:{tag}"
    kind = "attestation" if tag.endswith(".att") else "signature"
    if raw.media_type not in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST):
        raise VerificationError(
            f"malformed {kind} manifest {where}: media type {raw.media_type!r} is not an image manifest",
            reason="malformed",
        )
    try:
        manifest = raw.as_manifest(url=where)
    except RegistryError as err:
        raise VerificationError(f"malformed {kind} manifest {where}: {err}", reason="malformed") from None
    return SignatureManifest(raw, manifest)


def attach_signature(
    client: RegistryClient,
    repository: str,
    subject: Digest,
    payload: bytes,
    signature: bytes,
    *,
    is_duplicate: DuplicateCheck | None = None,
) -> bool:
    """Add one signature layer to ``subject``'s ``.sig`` manifest; ``True`` when a layer was added.

    Idempotent: nothing is written when a layer with the same payload already has this signature,
    or one that ``is_duplicate(layer, payload)`` accepts (ECDSA signatures differ on every run, so
    the caller says "already signed by this key", as cosign's duplicate detector does). Raises
    :class:`~ecr_oci.errors.RegistryError`.
    """
    layer = Descriptor(
        mediaType=SIMPLESIGNING_MEDIA_TYPE,
        digest=Digest.of(payload),
        size=len(payload),
        annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
    )

    def same(found: Descriptor) -> bool:
        if found.mediaType != SIMPLESIGNING_MEDIA_TYPE or found.digest != layer.digest:
            return False
        if found.annotations == layer.annotations:
            return True
        existing = SignatureLayer(found, (found.annotations or {}).get(SIGNATURE_ANNOTATION))
        return is_duplicate is not None and is_duplicate(existing, payload)

    client.push_blob_bytes(repository, payload)
    return append_layer(client, repository, signature_tag(subject), layer, is_duplicate=same)


def append_layer(
    client: RegistryClient,
    repository: str,
    tag: str,
    layer: Descriptor,
    *,
    is_duplicate: Callable[[Descriptor], bool],
) -> bool:
    """Append ``layer`` (its blob already pushed) to the cosign-style manifest at ``tag``.

    The read-modify-write under both ``.sig`` and ``.att``: ``False`` (nothing written) when an
    existing layer ``is_duplicate``; the config is rebuilt for the new layer list
    (:func:`config_bytes`). A tag that holds garbage is replaced: it carried nothing usable. Reads
    back after writing and retries if a concurrent writer replaced the manifest in between.
    Raises :class:`~ecr_oci.errors.RegistryError`.
    """
    for _ in range(_ATTACH_ATTEMPTS):
        current = _read_tolerant(client, repository, tag)
        existing = current.manifest.layers if current else []
        if any(is_duplicate(found) for found in existing):
            return False
        _put(client, repository, tag, [*existing, layer])
        after = _read_tolerant(client, repository, tag)
        if after and layer in after.manifest.layers:
            return True
    raise RegistryError(
        f"could not add a layer to {tag} after {_ATTACH_ATTEMPTS} attempts (heavy concurrent "
        "signing?); run the command again",
        url=f"{client.host}/{repository}:{tag}",
    )


def _read_tolerant(client: RegistryClient, repository: str, tag: str) -> SignatureManifest | None:
    try:
        return read_tagged(client, repository, tag)
    except VerificationError:
        return None


def _put(client: RegistryClient, repository: str, tag: str, layers: list[Descriptor]) -> None:
    config = config_bytes(layers)
    config_desc = client.push_blob_bytes(repository, config)
    manifest = Manifest(
        config=config_desc.model_copy(update={"mediaType": MediaType.OCI_CONFIG}), layers=layers
    )
    client.put_manifest(repository, tag, manifest.to_bytes(), MediaType.OCI_MANIFEST)


def config_bytes(layers: list[Descriptor]) -> bytes:
    """The image config cosign (go-containerregistry ``empty.Image`` + appended layers) writes.

    >>> d = Descriptor(mediaType=SIMPLESIGNING_MEDIA_TYPE, digest=Digest.of(b"p"), size=1)
    >>> config_bytes([d])[:60]
    b'{"architecture":"","created":"0001-01-01T00:00:00Z","history'
    """
    document = {
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(layer.digest) for layer in layers]},
        "config": {},
    }
    return json.dumps(document, separators=(",", ":")).encode()
