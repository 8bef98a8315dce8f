"""OCI image-spec value types: descriptors, manifests, indexes, image configs.

    >>> d = Descriptor(mediaType="application/vnd.oci.empty.v1+json", digest=EMPTY_CONFIG_DIGEST, size=2)
    >>> m = Manifest(config=d, layers=[])
    >>> m.to_bytes()[:40]
    b'{"schemaVersion":2,"mediaType":"applicat'

Manifests are identified by the digest of their exact bytes, so models serialise to compact JSON with a
fixed key order and ``None`` fields left out (``to_bytes``). Unknown fields of manifests we *read* are
kept (``extra="allow"``) so a manifest written by another tool round-trips byte-for-byte through
:class:`RawManifest`, which keeps the bytes it was parsed from.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecr_oci.digest import Digest
from ecr_oci.errors import DigestMismatchError, InputTooLargeError, InvalidReferenceError, RegistryError
from ecr_oci.mediatypes import MediaType

EMPTY_CONFIG_DIGEST = Digest.parse("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
#: distribution 2.8 refuses manifests over 4 MiB (REFERENCE.md); we refuse to parse bigger ones.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Configs up to this size also travel inside the manifest that names them (OCI 1.1 descriptor
#: ``data``, see :func:`embedded`); bigger ones only as blobs.
MAX_EMBEDDED_BYTES = 8 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    def to_json_obj(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_bytes(self) -> bytes:
        """Canonical compact JSON: these exact bytes are what gets pushed and digested."""
        return json.dumps(self.to_json_obj(), separators=(",", ":"), ensure_ascii=False).encode()


class Platform(_Model):
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = Field(default=None, alias="os.version")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8`` → Platform; the caller validated the shape."""
        parts = text.split("/")
        return cls(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) > 2 else None)

    def matches(self, want: Platform) -> bool:
        """Whether this (offered) platform is ``want``: same os and architecture, and the same
        variant unless ``want`` names none (``linux/arm64`` takes ``linux/arm64/v8``).

            >>> Platform.parse("linux/arm64/v8").matches(Platform.parse("linux/arm64"))
            True
            >>> Platform.parse("linux/arm/v6").matches(Platform.parse("linux/arm/v7"))
            False
        """
        if (self.os, self.architecture) != (want.os, want.architecture):
            return False
        return want.variant is None or self.variant == want.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


class Descriptor(_Model):
    mediaType: str
    digest: Digest
    size: int = Field(ge=0)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifactType: str | None = None
    #: The content itself, base64 (OCI 1.1 "embedded data"); readers verify it (:func:`embedded_content`).
    data: str | None = None


def embedded(descriptor: Descriptor, content: bytes) -> Descriptor:
    """``descriptor`` with ``content`` inline (``data``) when it is at most :data:`MAX_EMBEDDED_BYTES`.

    Why: whoever reads a manifest for its config (the ECR service's indexer: the platform of an
    image, the metadata of a bundle) then needs no second round trip, and distribution 2.8 spends
    ~1 ms of CPU on every blob read however small (docs/service.md). Clients that do not know
    ``data`` fetch the blob as before, so it is still pushed.

        >>> d = Descriptor(mediaType="application/json", digest=Digest.of(b"{}"), size=2)
        >>> embedded(d, b"{}").data
        'e30='
        >>> embedded_content(embedded(d, b"{}").to_json_obj())
        b'{}'
    """
    if len(content) > MAX_EMBEDDED_BYTES:
        return descriptor
    return descriptor.model_copy(update={"data": base64.b64encode(content).decode("ascii")})


def embedded_content(descriptor: Mapping[str, Any]) -> bytes | None:
    """The inline content of a descriptor read from a manifest, or ``None`` when it has none, or
    none that decodes to its ``size`` and ``digest`` (the caller then reads the blob: the inline
    copy is the manifest author's claim, the digest is what counts)."""
    data = descriptor.get("data")
    if not isinstance(data, str) or len(data) > 2 * MAX_EMBEDDED_BYTES:
        return None
    try:
        content = base64.b64decode(data, validate=True)
        if len(content) != descriptor.get("size"):
            return None
        Digest.parse(str(descriptor.get("digest"))).verify(content, what="embedded data")
    except (binascii.Error, ValueError, DigestMismatchError, InvalidReferenceError):
        return None
    return content


class Manifest(_Model):
    """An OCI image manifest (also the shape of bundle, signature and profile manifests)."""

    schemaVersion: int = 2
    mediaType: str = MediaType.OCI_MANIFEST
    artifactType: str | None = None
    config: Descriptor
    layers: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class Index(_Model):
    schemaVersion: int = 2
    mediaType: str = MediaType.OCI_INDEX
    artifactType: str | None = None
    manifests: list[Descriptor]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


class RootFS(_Model):
    type: str = "layers"
    diff_ids: list[Digest]


class History(_Model):
    created: str | None = None
    created_by: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None
    author: str | None = None


class ContainerConfig(_Model):
    """The ``config`` member of an image config (image-spec config.md): what a runtime starts."""

    User: str | None = None
    ExposedPorts: dict[str, Any] | None = None
    Env: list[str] | None = None
    Entrypoint: list[str] | None = None
    Cmd: list[str] | None = None
    Volumes: dict[str, Any] | None = None
    WorkingDir: str | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None


class ImageConfig(_Model):
    created: str | None = None
    author: str | None = None
    architecture: str
    os: str
    variant: str | None = None
    config: ContainerConfig | None = None
    rootfs: RootFS
    history: list[History] | None = None


@dataclass(frozen=True)
class RawManifest:
    """A manifest or index as the registry served it: the exact bytes, their digest and media type.

    Why keep the bytes: a digest covers bytes, not a parsed object; re-serialising a manifest another
    tool wrote would change its digest (oras-py's ``Subject.from_manifest`` bug, REFERENCE.md).
    """

    media_type: str
    digest: Digest
    data: bytes

    @classmethod
    def received(cls, reference: str | Digest, body: bytes, content_type: str, *, what: str) -> RawManifest:
        """A manifest as a registry answered a GET of ``reference``: verified when asked for by
        digest (a registry must not substitute content), hashed when asked for by tag."""
        if isinstance(reference, Digest):
            reference.verify(body, what=what)
            digest = reference
        else:
            digest = Digest.of(body)
        return cls(media_type=content_type.split(";")[0].strip(), digest=digest, data=body)

    @property
    def is_index(self) -> bool:
        return self.media_type in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST)

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError("manifest is not a JSON object")
        return value

    def as_manifest(self, *, url: str = "") -> Manifest:
        return _parse(Manifest, self, url)

    def as_index(self, *, url: str = "") -> Index:
        return _parse(Index, self, url)

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor pointing at this manifest (for ``subject`` or an index entry)."""
        return Descriptor(mediaType=self.media_type, digest=self.digest, size=len(self.data), **extra)


_M = TypeVar("_M", bound=_Model)


def _parse(model: type[_M], raw: RawManifest, url: str) -> _M:
    if len(raw.data) > MAX_MANIFEST_BYTES:
        raise InputTooLargeError(f"manifest {raw.digest} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        return model.model_validate_json(raw.data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryError(
            f"malformed {model.__name__.lower()} {raw.digest} ({where}: {first['msg']})", url=url
        ) from None


def parse_config(data: bytes) -> ImageConfig:
    return ImageConfig.model_validate_json(data)
