"""Runnable-image assembly without a Docker engine: base image + model layer + code layer.

    >>> from ecr_oci.oci.models import ImageConfig, RootFS
    >>> base = ImageConfig(architecture="amd64", os="linux", rootfs=RootFS(diff_ids=[]))
    >>> new = derive_config(base, appended=[], settings=RuntimeSettings(entrypoint=["/bin/sh"]),
    ...                     labels={}, created="1970-01-01T00:00:00Z")
    >>> new.config.Entrypoint
    ['/bin/sh']

Like ``crane append``, ``ko`` and ``jib``: the base image's manifest keeps its layers, ours are appended
(model below code, DESIGN.md §3, so a code-only update moves only the top layer) and the image config is
rewritten (``diff_ids``, history, entrypoint/cmd/env/workdir, labels). Everything here is pure: the
push module fetches and uploads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ecr_oci.bundle.config import ROLE_ANNOTATION
from ecr_oci.digest import Digest
from ecr_oci.errors import BundleSpecError
from ecr_oci.mediatypes import MediaType, image_layer_media_type
from ecr_oci.oci.models import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    RootFS,
)

#: Docker schema2 types of a base image map one-to-one onto OCI types (same blob bytes).
_TO_OCI = {
    MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
    MediaType.DOCKER_CONFIG: MediaType.OCI_CONFIG,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}


@dataclass(frozen=True)
class RuntimeSettings:
    """What ``ecr.yaml``'s ``runtime`` says about how the container starts."""

    entrypoint: Sequence[str]
    cmd: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None


@dataclass(frozen=True)
class AppendedLayer:
    """One of our layers as the image sees it."""

    role: str
    digest: Digest
    diff_id: Digest
    size: int
    compression: str | None
    created_by: str

    def descriptor(self) -> Descriptor:
        return Descriptor(
            mediaType=image_layer_media_type(self.compression),
            digest=self.digest,
            size=self.size,
            annotations={ROLE_ANNOTATION: self.role},
        )


def select_platforms(
    index: Index, requested: Sequence[Platform], *, base: str
) -> list[tuple[Platform, Descriptor]]:
    """The base index entries to build on: the requested platforms, or every real one.

    Entries with platform ``unknown/unknown`` (BuildKit attestation manifests) are not images.
    Raises :class:`BundleSpecError` naming the platforms the base does offer.
    """
    offered = [
        (d.platform, d) for d in index.manifests if d.platform is not None and d.platform.os != "unknown"
    ]
    if not requested:
        return offered
    chosen = []
    for want in requested:
        match = next((pair for pair in offered if pair[0].matches(want)), None)
        if match is None:
            names = ", ".join(str(p) for p, _ in offered) or "none"
            raise BundleSpecError(
                f"base image {base} has no {want} image (it offers: {names}); change "
                "runtime.platforms or the base",
                file="ecr.yaml",
                field="runtime.platforms",
            )
        chosen.append(match)
    return chosen


def derive_config(
    base: ImageConfig,
    *,
    appended: Sequence[AppendedLayer],
    settings: RuntimeSettings,
    labels: dict[str, str],
    created: str,
) -> ImageConfig:
    """The image config of the runnable image: base config plus our layers and settings.

    ``Env`` merges by name (ours win); ``Cmd`` is reset when we set an entrypoint, as Docker does,
    so a base's ``Cmd`` is never passed to our entrypoint by surprise.
    """
    container = base.config or ContainerConfig()
    env = {item.partition("=")[0]: item for item in container.Env or []}
    env.update({key: f"{key}={value}" for key, value in settings.env.items()})
    new_container = container.model_copy(
        update={
            "Entrypoint": list(settings.entrypoint),
            "Cmd": list(settings.cmd) or None,
            "Env": list(env.values()) or None,
            "WorkingDir": settings.workdir or container.WorkingDir,
            "Labels": {**(container.Labels or {}), **labels},
        }
    )
    history = list(base.history or [])
    history += [
        History(created=created, created_by=layer.created_by, comment="ecr-oci") for layer in appended
    ]
    return base.model_copy(
        update={
            "created": created,
            "config": new_container,
            "rootfs": RootFS(diff_ids=[*base.rootfs.diff_ids, *(a.diff_id for a in appended)]),
            "history": history,
        }
    )


def derive_manifest(
    base: Manifest,
    *,
    config: Descriptor,
    appended: Sequence[AppendedLayer],
    annotations: dict[str, str],
) -> Manifest:
    """The runnable image manifest: the base's layers (as OCI types) followed by ours."""
    base_layers = [
        layer.model_copy(update={"mediaType": _TO_OCI.get(layer.mediaType, layer.mediaType)})
        for layer in base.layers
    ]
    return Manifest(
        config=config.model_copy(update={"mediaType": MediaType.OCI_CONFIG}),
        layers=[*base_layers, *(layer.descriptor() for layer in appended)],
        annotations=annotations or None,
    )
