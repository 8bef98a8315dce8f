"""The search API's response models: the JSON contract of ``/api/v1`` (docs/service.md).

    >>> page = SearchPage(items=[], next_cursor=None)
    >>> page.model_dump()
    {'items': [], 'next_cursor': None}

These models are what ``/openapi.json`` documents and what ``ecr-oci search``/``show`` parse, so
they import nothing of FastAPI or SQLAlchemy: a client needs only pydantic. Field names are
snake_case JSON; digests are strings (``sha256:<hex>``) because they come from the index, which
stored them already checked. Adding a field is compatible; renaming or removing one needs
``/api/v2``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActivityEvent",
    "ActivitySummary",
    "Author",
    "BundleDetail",
    "BundleProfiles",
    "DeviceHistory",
    "DeviceProfile",
    "DistributionErrorItem",
    "DistributionErrors",
    "LayerInfo",
    "MetricFigures",
    "OciDescriptor",
    "OciIndex",
    "PlatformInfo",
    "ProfileFigures",
    "ReferrerInfo",
    "ReferrerList",
    "SearchPage",
    "SignatureInfo",
    "SortOrder",
    "VersionBrief",
    "VersionDetail",
    "VersionProfiles",
    "VersionPulls",
    "VersionSummary",
]

#: ``relevance`` (best text match first; name order when there is no text), ``name``
#: (``namespace/name`` then oldest version first), ``created`` (newest build first; versions
#: without a build time come last on SQLite and first on PostgreSQL, each database's index order).
SortOrder = Literal["relevance", "name", "created"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Author(_Out):
    name: str
    email: str | None = None


class PlatformInfo(_Out):
    os: str
    architecture: str
    variant: str | None = None
    digest: str = Field(description="the platform's image manifest digest")

    @property
    def text(self) -> str:
        """``os/arch[/variant]``, the form the ``platform`` filter takes."""
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


class LayerInfo(_Out):
    role: str = Field(description="code, model, data, profile (bundle layers) or base")
    media_type: str
    digest: str
    size: int


class SignatureInfo(_Out):
    kind: str = Field(description="cosign, attestation or sigstore-bundle")
    subject_digest: str
    manifest_digest: str
    key_fingerprint: str | None = Field(
        description="hex SHA-256 of the signer's PKIX DER public key, when the signature names it; "
        "a claim recorded by the index, not a verification (use `ecr-oci verify`)"
    )
    predicate_type: str | None = None


class ReferrerInfo(_Out):
    digest: str
    media_type: str
    artifact_type: str | None
    kind: str = Field(description="bundle, signature, attestation, sigstore-bundle, profile, other …")
    size: int
    annotations: dict[str, str] = Field(default_factory=dict)


class VersionSummary(_Out):
    """One search hit: a version of a bundle."""

    repository: str = Field(description="namespace/name")
    namespace: str
    version: str
    description: str | None
    license: str | None
    keywords: list[str]
    authors: list[Author]
    requirements: list[str]
    platforms: list[str] = Field(description="os/arch[/variant]")
    image_digest: str
    bundle_digest: str | None
    total_size: int | None
    created: str | None = Field(description="RFC 3339 build time from the bundle config")
    score: float | None = Field(default=None, description="text relevance (higher is better)")


class SearchPage(_Out):
    items: list[VersionSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class MetricFigures(_Out):
    """One plugin metric: percentiles of the values it reported, and how many it reported."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    count: int | None = None


class ProfileFigures(_Out):
    """Measured figures (absent = not measured, never zero: no GPU fields without a GPU)."""

    created: str | None = Field(default=None, description="when the (newest) run started")
    manifest_digest: str | None = Field(default=None, description="the profile referrer (one run)")
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    gpu_util_percent_peak: float | None = None
    gpu_memory_peak_bytes: int | None = None
    exit_status: int | None = None
    metrics: dict[str, MetricFigures] = Field(default_factory=dict)


class DeviceProfile(_Out):
    """The measured profiles of one device on one platform of a version, aggregated."""

    device: str
    arch: str | None
    platform_digest: str = Field(description="the platform manifest the profiles are referrers of")
    runs: int
    median: ProfileFigures = Field(
        description="median across runs of each figure (metric counts summed): what search filters on"
    )
    latest: ProfileFigures = Field(description="the newest run's figures")


class VersionBrief(_Out):
    version: str
    image_digest: str
    image_media_type: str
    bundle_digest: str | None
    total_size: int | None
    created: str | None
    platforms: list[PlatformInfo]
    profiles: list[DeviceProfile] = Field(default_factory=list, description="measured, per device")


class BundleDetail(_Out):
    repository: str
    namespace: str
    name: str
    latest: VersionSummary | None = Field(description="the newest version (by build time)")
    versions: list[VersionBrief] = Field(description="newest first")


class VersionDetail(_Out):
    summary: VersionSummary
    image_media_type: str
    homepage: str | None
    source_url: str | None
    source_commit: str | None
    platforms: list[PlatformInfo]
    layers: list[LayerInfo]
    referrers: list[ReferrerInfo] = Field(description="manifests whose subject is the image")
    signatures: list[SignatureInfo]
    config: dict[str, Any] | None = Field(description="the whole bundle config, when indexed")
    profiles: list[DeviceProfile] = Field(default_factory=list, description="measured, per device")
    declared_profile: dict[str, Any] | None = Field(
        default=None, description="the bundle's initial profile (`profile:` of ecr.yaml): expectations"
    )


class VersionProfiles(_Out):
    version: str
    image_digest: str
    created: str | None
    declared: dict[str, Any] | None = Field(
        description="the initial profile the author shipped (`profile:` of ecr.yaml), not measured"
    )
    measured: list[DeviceProfile] = Field(description="per device, from profile referrers")


class DeviceHistory(_Out):
    """One device across versions: "did 0.2 get slower than 0.1 here?" in one list."""

    device: str
    versions: list[VersionProfiles] = Field(
        description="oldest version first; each with only this device's summary in `measured`"
    )


class BundleProfiles(_Out):
    repository: str
    versions: list[VersionProfiles] = Field(description="newest first")
    devices: list[DeviceHistory] = Field(description="by device name")


class ReferrerList(_Out):
    repository: str
    subject: str
    items: list[ReferrerInfo]


class VersionPulls(_Out):
    version: str
    image_digest: str
    pulls: int = Field(description="manifest GETs of the version's image (by tag or by digest)")


class ActivityEvent(_Out):
    action: str
    digest: str | None
    tag: str | None
    actor: str | None
    source_addr: str | None
    user_agent: str | None
    timestamp: str


class ActivitySummary(_Out):
    repository: str
    pulls: list[VersionPulls]
    recent: list[ActivityEvent] = Field(description="the latest events, newest first")


class OciDescriptor(BaseModel):
    """An entry of the OCI referrers index (image-spec §descriptor); camelCase as the spec names it."""

    mediaType: str
    digest: str
    size: int
    artifactType: str | None = None
    annotations: dict[str, str] | None = None


class OciIndex(BaseModel):
    """What ``GET /v2/<name>/referrers/<digest>`` answers (distribution-spec §"Listing Referrers")."""

    schemaVersion: Literal[2] = 2
    mediaType: str
    manifests: list[OciDescriptor]


class DistributionErrorItem(BaseModel):
    code: str
    message: str
    detail: Any = None


class DistributionErrors(BaseModel):
    """The distribution-spec error body, used under ``/v2/`` where OCI clients expect it."""

    errors: list[DistributionErrorItem]
