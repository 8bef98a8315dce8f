"""Profiles as referrers: attach one to the platform manifest that ran, list those of a version.

    >>> from ecr_oci.profile.attach import attach_profile, list_profiles          # doctest: +SKIP
    >>> attach_profile(client, Reference.parse("127.0.0.1:5000/waggle/cpu-burner:0.1.0"), profile)
    ...                                                                            # doctest: +SKIP

A profile says how *one platform's image* ran, so its ``subject`` is that platform manifest, not the
index (issue 6): the index entry whose platform is the profile's ``device.arch``. The referrer is an
OCI artifact manifest: ``artifactType`` :attr:`~ecr_oci.mediatypes.MediaType.PROFILE`, the empty
config, one layer holding the profile JSON, and annotations with the key figures
(:class:`~ecr_oci.mediatypes.ProfileAnnotation`) so that a referrers listing alone ranks bundles.
Pushing goes through :func:`ecr_oci.oci.referrers.attach` (referrers API where served, else the tag
fallback with one tag per referrer, so concurrent attaches lose nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from ecr_oci.digest import Digest
from ecr_oci.errors import Error
from ecr_oci.mediatypes import MediaType, ProfileAnnotation, profile_metric_annotation
from ecr_oci.oci import referrers
from ecr_oci.oci.models import EMPTY_CONFIG_DIGEST, Descriptor, Manifest, Platform, RawManifest
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.profile.model import Profile
from ecr_oci.reference import Reference

_EMPTY_CONFIG = Descriptor(mediaType=MediaType.OCI_EMPTY, digest=EMPTY_CONFIG_DIGEST, size=2)
_CREATED = "org.opencontainers.image.created"


class PlatformMismatchError(Error):
    """The profile's ``device.arch`` is not a platform of the image it is attached to."""

    exit_code = 2


@dataclass(frozen=True)
class AttachedProfile:
    """Where a profile went: its referrer manifest, and the platform manifest it is about."""

    reference: Reference
    digest: Digest
    subject: Digest
    platform: str | None
    annotations: dict[str, str]

    def to_json_obj(self) -> dict[str, object]:
        return {
            "reference": str(self.reference),
            "digest": str(self.digest),
            "subject": str(self.subject),
            "platform": self.platform,
            "annotations": self.annotations,
        }


@dataclass(frozen=True)
class ProfileEntry:
    """One profile as a referrers listing shows it (no profile blob fetched)."""

    digest: Digest
    subject: Digest
    platform: str | None
    annotations: dict[str, str]

    def figure(self, key: str) -> str | None:
        return self.annotations.get(key)

    def metrics_p95(self) -> dict[str, str]:
        prefix = ProfileAnnotation.METRIC_PREFIX.value
        return {
            key.removeprefix(prefix).removesuffix(".p95"): value
            for key, value in sorted(self.annotations.items())
            if key.startswith(prefix) and key.endswith(".p95")
        }

    def to_json_obj(self) -> dict[str, object]:
        return {
            "digest": str(self.digest),
            "subject": str(self.subject),
            "platform": self.platform,
            "annotations": self.annotations,
        }


def _number(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def profile_annotations(profile: Profile) -> dict[str, str]:
    """The key figures of ``profile`` as referrer annotations (absent figures are left out)."""
    found: dict[str, str] = {}
    device, measures = profile.device, profile.measures
    if device is not None:
        for key, value in (
            (ProfileAnnotation.DEVICE, profile.device_label),
            (ProfileAnnotation.ARCH, device.arch),
            (ProfileAnnotation.ACCELERATOR, device.accelerator),
        ):
            if value:
                found[key.value] = value
    if profile.software and profile.software.get("runtime"):
        found[ProfileAnnotation.RUNTIME.value] = profile.software["runtime"]
    if measures is not None:
        for key, number in (
            (ProfileAnnotation.WALL_S, measures.wall_s),
            (ProfileAnnotation.CPU_S, measures.cpu_s),
            (ProfileAnnotation.PEAK_RSS_BYTES, measures.peak_rss_bytes),
            (ProfileAnnotation.GPU_MEMORY_PEAK_BYTES, measures.gpu_memory_peak_bytes),
        ):
            if number is not None:
                found[key.value] = _number(number)
    for metric, summary in (profile.metrics or {}).items():
        if summary.p95 is not None:
            found[profile_metric_annotation(metric, "p95")] = _number(summary.p95)
    if profile.created:
        found[_CREATED] = profile.created
    return found


def platform_subject(
    client: RegistryClient, reference: Reference, arch: str | None
) -> tuple[Descriptor, str | None]:
    """The manifest a profile of ``arch`` is about: ``reference`` itself when it is one image, else
    its index entry for ``arch``. Raises :class:`PlatformMismatchError` when there is none."""
    raw = client.get_manifest(reference.repository, reference.identifier)
    if not raw.is_index:
        return raw.descriptor(), arch
    offered = [d for d in raw.as_index().manifests if d.platform is not None and d.platform.os != "unknown"]
    names = ", ".join(str(d.platform) for d in offered) or "none"
    if arch is None:
        raise PlatformMismatchError(
            f"{reference} is a multi-platform index ({names}): the profile needs device.arch to pick one"
        )
    want = Platform.parse(arch)
    for entry in offered:
        have = entry.platform
        assert have is not None
        if have.matches(want):
            subject = Descriptor(mediaType=entry.mediaType, digest=entry.digest, size=entry.size)
            return subject, str(have)
    raise PlatformMismatchError(
        f"{reference} has no {arch} image (it offers: {names}); profile the right platform"
    )


def attach_profile(client: RegistryClient, reference: Reference, profile: Profile) -> AttachedProfile:
    """Push ``profile`` as a referrer of the platform manifest of ``reference`` that matches it.

    Idempotent (the same profile bytes give the same referrer). Raises
    :class:`PlatformMismatchError` and :class:`~ecr_oci.errors.RegistryError`; nothing is pushed when
    the platform does not match.
    """
    subject, platform = platform_subject(client, reference, profile.arch)
    layer = _push_small(client, reference.repository, profile.to_bytes())
    _push_small(client, reference.repository, b"{}")
    annotations = profile_annotations(profile)
    manifest = Manifest(
        artifactType=MediaType.PROFILE,
        config=_EMPTY_CONFIG,
        layers=[layer.model_copy(update={"mediaType": MediaType.PROFILE})],
        subject=subject,
        annotations=annotations,
    )
    pushed = referrers.attach(client, reference.repository, manifest)
    return AttachedProfile(
        reference.with_digest(subject.digest), pushed.digest, subject.digest, platform, annotations
    )


def _push_small(client: RegistryClient, repository: str, data: bytes) -> Descriptor:
    """``push_blob_bytes``, retried on a busy registry's 500 (50 concurrent attaches of the same
    empty config race on its HEAD)."""
    return referrers.retry_busy(lambda: client.push_blob_bytes(repository, data))


def list_profiles(client: RegistryClient, reference: Reference) -> list[ProfileEntry]:
    """Every profile of the version ``reference`` names: those of each platform manifest (and any
    attached to the index itself), newest first."""
    raw: RawManifest = client.get_manifest(reference.repository, reference.identifier)
    subjects: list[tuple[Digest, str | None]] = [(raw.digest, None)]
    if raw.is_index:
        subjects += [
            (d.digest, str(d.platform) if d.platform else None)
            for d in raw.as_index().manifests
            if d.platform is None or d.platform.os != "unknown"
        ]
    found: list[ProfileEntry] = []
    for digest, platform in subjects:
        for descriptor in referrers.list_referrers(
            client, reference.repository, digest, artifact_type=MediaType.PROFILE
        ):
            annotations = dict(descriptor.annotations or {})
            found.append(
                ProfileEntry(
                    descriptor.digest,
                    digest,
                    platform or annotations.get(ProfileAnnotation.ARCH.value),
                    annotations,
                )
            )
    found.sort(key=lambda entry: entry.annotations.get(_CREATED, ""), reverse=True)
    return found
