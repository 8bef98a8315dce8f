"""What a pushed version holds: metadata, platforms, layers with roles, and its referrers tree.

    >>> from ecr_oci.bundle.inspect import inspect_reference     # doctest: +SKIP
    >>> inspect_reference(client, Reference.parse("127.0.0.1:5000/waggle/hello-sensor:0.1.0"))

Works on any image: one pushed by another tool has no bundle, and says so (``bundle`` is ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ecr_oci.bundle.pull import read_config, resolve_bundle
from ecr_oci.digest import Digest
from ecr_oci.errors import NotFound
from ecr_oci.oci import referrers
from ecr_oci.oci.models import parse_config
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference

#: Referrers of referrers (a signature of a profile …) are followed this deep.
MAX_DEPTH = 3


@dataclass(frozen=True)
class ReferrerNode:
    digest: Digest
    artifact_type: str | None
    size: int
    annotations: dict[str, str]
    children: list[ReferrerNode] = field(default_factory=list)

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "artifactType": self.artifact_type,
            "size": self.size,
            "annotations": self.annotations,
            "referrers": [child.to_json_obj() for child in self.children],
        }


@dataclass(frozen=True)
class PlatformInfo:
    platform: str
    digest: Digest
    size: int
    referrers: list[ReferrerNode]


@dataclass(frozen=True)
class Inspection:
    reference: str
    digest: Digest
    media_type: str
    platforms: list[PlatformInfo]
    referrers: list[ReferrerNode]
    bundle: dict[str, Any] | None

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "platforms": [
                {
                    "platform": p.platform,
                    "digest": str(p.digest),
                    "size": p.size,
                    "referrers": [r.to_json_obj() for r in p.referrers],
                }
                for p in self.platforms
            ],
            "referrers": [r.to_json_obj() for r in self.referrers],
            "bundle": self.bundle,
        }


def inspect_reference(client: RegistryClient, reference: Reference) -> Inspection:
    image = client.get_manifest(reference.repository, reference.identifier)
    repository = reference.repository
    platforms = []
    if image.is_index:
        for entry in image.as_index().manifests:
            platforms.append(
                PlatformInfo(
                    str(entry.platform) if entry.platform else "unknown",
                    entry.digest,
                    entry.size,
                    _tree(client, repository, entry.digest, MAX_DEPTH),
                )
            )
    else:
        manifest = image.as_manifest()
        config = parse_config(read_config(client, repository, manifest.config))
        name = "/".join(p for p in (config.os, config.architecture, config.variant) if p)
        platforms.append(PlatformInfo(name, image.digest, len(image.data), []))
    try:
        resolved = resolve_bundle(client, reference.with_digest(image.digest), image=image)
        bundle: dict[str, Any] | None = {
            "digest": str(resolved.bundle.digest),
            **resolved.config.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    except NotFound:
        bundle = None
    return Inspection(
        reference=str(reference),
        digest=image.digest,
        media_type=image.media_type,
        platforms=platforms,
        referrers=_tree(client, repository, image.digest, MAX_DEPTH),
        bundle=bundle,
    )


def _tree(client: RegistryClient, repository: str, subject: Digest, depth: int) -> list[ReferrerNode]:
    if depth == 0:
        return []
    return [
        ReferrerNode(
            digest=d.digest,
            artifact_type=d.artifactType,
            size=d.size,
            annotations=dict(d.annotations or {}),
            children=_tree(client, repository, d.digest, depth - 1),
        )
        for d in referrers.list_referrers(client, repository, subject)
    ]
