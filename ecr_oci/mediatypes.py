"""Every media type ecr-oci writes or reads, in one enum with predicates.

    >>> MediaType.CODE_TAR_GZIP.role
    'code'
    >>> MediaType.OCI_MANIFEST.is_manifest, MediaType.OCI_INDEX.is_index
    (True, True)

Our own types are specified in the repository's ``mediatypes/`` folder (one JSON Schema and one spec
page each; ``tests/unit/test_mediatypes.py`` holds this enum against that folder). The folder ships
inside the wheel as ``ecr_oci/_shipped/mediatypes``.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path


class MediaType(enum.StrEnum):
    # ecr-oci's own types (DESIGN.md §3)
    BUNDLE = "application/vnd.waggle.ecr.bundle.v1"
    BUNDLE_CONFIG = "application/vnd.waggle.ecr.bundle.config.v1+json"
    CODE_TAR_GZIP = "application/vnd.waggle.ecr.code.v1.tar+gzip"
    CODE_TAR_ZSTD = "application/vnd.waggle.ecr.code.v1.tar+zstd"
    MODEL_TAR = "application/vnd.waggle.ecr.model.v1.tar"
    MODEL_TAR_GZIP = "application/vnd.waggle.ecr.model.v1.tar+gzip"
    MODEL_TAR_ZSTD = "application/vnd.waggle.ecr.model.v1.tar+zstd"
    DATA_TAR_GZIP = "application/vnd.waggle.ecr.data.v1.tar+gzip"
    PROFILE = "application/vnd.waggle.ecr.profile.v1+json"

    # standard OCI / Docker types we read or write
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    # a DSSE envelope: the layer of a cosign attestation manifest (tag ``sha256-<hex>.att``)
    DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"

    @property
    def is_ours(self) -> bool:
        return self.value.startswith("application/vnd.waggle.ecr.")

    @property
    def is_index(self) -> bool:
        return self in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST)

    @property
    def is_manifest(self) -> bool:
        """True for single-image manifests and for indexes (anything served under /manifests/)."""
        return self.is_index or self in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)

    @property
    def role(self) -> str | None:
        """The bundle role of one of our layer types: code, model, data, profile; else ``None``."""
        if not self.is_ours:
            return None
        kind = self.value.removeprefix("application/vnd.waggle.ecr.").split(".", 1)[0]
        return kind if kind in ROLES else None

    @property
    def compression(self) -> str | None:
        """``gzip``/``zstd`` for compressed tar layers, ``None`` for plain tar or non-layers."""
        for suffix in ("gzip", "zstd"):
            if self.value.endswith(f"+{suffix}") or self.value.endswith(f".tar.{suffix}"):
                return suffix
        return None


ROLES = ("code", "model", "data", "profile")


class ProfileAnnotation(enum.StrEnum):
    """Annotations of a profile referrer (``mediatypes/profile.md``): the key figures, so a referrers
    listing alone can rank bundles without fetching the profiles.

        >>> profile_metric_annotation("inference_ms", "p95")
        'org.waggle-sensor.ecr.profile.metric.inference_ms.p95'

    Values are strings (OCI annotations): numbers in plain decimal, bytes as integers.
    """

    DEVICE = "org.waggle-sensor.ecr.profile.device"
    ARCH = "org.waggle-sensor.ecr.profile.arch"
    ACCELERATOR = "org.waggle-sensor.ecr.profile.accelerator"
    RUNTIME = "org.waggle-sensor.ecr.profile.runtime"
    WALL_S = "org.waggle-sensor.ecr.profile.wall-s"
    CPU_S = "org.waggle-sensor.ecr.profile.cpu-s"
    PEAK_RSS_BYTES = "org.waggle-sensor.ecr.profile.peak-rss-bytes"
    GPU_MEMORY_PEAK_BYTES = "org.waggle-sensor.ecr.profile.gpu-memory-peak-bytes"
    #: prefix of ``…metric.<name>.p95``: see :func:`profile_metric_annotation`
    METRIC_PREFIX = "org.waggle-sensor.ecr.profile.metric."


def profile_metric_annotation(metric: str, statistic: str = "p95") -> str:
    """The annotation key holding ``statistic`` of the plugin metric ``metric``."""
    return f"{ProfileAnnotation.METRIC_PREFIX.value}{metric}.{statistic}"


class PredicateType(enum.StrEnum):
    """in-toto predicate types ecr-oci writes: ours are specified in ``mediatypes/`` like media types.

        >>> PredicateType.APPROVAL.is_ours, PredicateType.SLSA_PROVENANCE_V1.is_ours
        (True, False)

    A schema for one of ours lists it in ``x-predicate-types`` (instead of ``x-media-types``).

    ``APPROVAL`` names a family, not a type that is written: an approval for deployment ``D`` has
    the type ``APPROVAL/D`` (:func:`approval_type`). Kyverno, policy-controller and ``cosign
    verify-attestation --policy`` judge *every* attestation of the type they are given and fail on
    the first that does not pass, so one shared type would make an image approved for two
    deployments fail both deployments' policies; with a type per deployment each policy sees only
    its own approvals (``mediatypes/approval.md``).
    """

    APPROVAL = "https://ecr.waggle-sensor.org/attestations/approval/v1"
    SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"

    @property
    def is_ours(self) -> bool:
        return self.value.startswith("https://ecr.waggle-sensor.org/")


#: A deployment name, as an approval's ``deployment`` and its predicate type's last path segment:
#: letters, digits, ``.``, ``_``, ``-``, starting and ending with a letter or digit, at most 128.
#: Nothing in it needs escaping in a URI path, a Rego string, a CUE string or a Kyverno condition.
DEPLOYMENT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
_DEPLOYMENT = re.compile(DEPLOYMENT_PATTERN)


def check_deployment_name(deployment: str) -> str:
    """Return ``deployment`` if an approval can name it; raise ``ValueError`` saying what is allowed.

    >>> check_deployment_name("sage-prod")
    'sage-prod'
    """
    # fullmatch: the pattern's ``$`` would also accept a trailing newline with re.match
    if not _DEPLOYMENT.fullmatch(deployment):
        raise ValueError(
            f"invalid deployment {deployment!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit (e.g. sage-prod)"
        )
    return deployment


def approval_type(deployment: str) -> str:
    """The predicate type of an approval for ``deployment`` (see :class:`PredicateType`).

        >>> approval_type("sage-prod")
        'https://ecr.waggle-sensor.org/attestations/approval/v1/sage-prod'

    Raises ``ValueError`` for a name an approval cannot carry (:data:`DEPLOYMENT_PATTERN`).
    """
    return f"{PredicateType.APPROVAL.value}/{check_deployment_name(deployment)}"


def approval_deployment(predicate_type: str) -> str | None:
    """The deployment an approval type is for; ``None`` for any other type (the family's base too).

    >>> approval_deployment("https://ecr.waggle-sensor.org/attestations/approval/v1/sage-prod")
    'sage-prod'
    >>> approval_deployment(PredicateType.APPROVAL) is None
    True
    """
    name = predicate_type.removeprefix(f"{PredicateType.APPROVAL.value}/")
    return name if name != predicate_type and _DEPLOYMENT.fullmatch(name) else None


#: Accept header for manifest GET/HEAD: without the OCI types distribution 2.8 answers 404
#: (REFERENCE.md, "The registry").
MANIFEST_ACCEPT = ", ".join(
    [
        MediaType.OCI_INDEX,
        MediaType.OCI_MANIFEST,
        MediaType.DOCKER_MANIFEST_LIST,
        MediaType.DOCKER_MANIFEST,
    ]
)


def layer_media_type(role: str, compression: str | None) -> MediaType:
    """Our bundle-manifest media type for a layer of ``role`` stored with ``compression``."""
    suffix = {None: "", "gzip": "+gzip", "zstd": "+zstd"}[compression]
    return MediaType(f"application/vnd.waggle.ecr.{role}.v1.tar{suffix}")


def image_layer_media_type(compression: str | None) -> MediaType:
    """The standard OCI layer type that containerd, podman and Docker accept for this compression."""
    return {
        None: MediaType.OCI_LAYER_TAR,
        "gzip": MediaType.OCI_LAYER_GZIP,
        "zstd": MediaType.OCI_LAYER_ZSTD,
    }[compression]


def spec_folder() -> Path:
    """The ``mediatypes/`` folder: shipped in the wheel, or the repository's in a source checkout."""
    shipped = Path(__file__).parent / "_shipped" / "mediatypes"
    return shipped if shipped.is_dir() else Path(__file__).parent.parent / "mediatypes"
