"""Pull a bundle back into an author's directory layout, and inspect what a version holds.

    >>> from ecr_oci.bundle.pull import pull_bundle                       # doctest: +SKIP
    >>> pull_bundle(client, Reference.parse("127.0.0.1:5000/waggle/hello-sensor:0.1.0"),
    ...             Path("out"), only={"code", "model"})                  # doctest: +SKIP

The bundle is found through the referrers of the image the tag points at. Every blob is verified
against its digest while it streams, every archive entry is checked (no ``..``, absolute paths, links
escaping, devices; size limits), and everything lands in a staging directory that is renamed into place
only at the end: a corrupt blob or a hostile archive leaves nothing at ``out``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from ecr_oci.bundle.config import ROLE_ANNOTATION, BundleConfig
from ecr_oci.bundle.extract import extract_layer
from ecr_oci.bundle.progress import ProgressSink
from ecr_oci.digest import Digest
from ecr_oci.errors import Error, NotFound, RegistryError
from ecr_oci.mediatypes import ROLES, MediaType
from ecr_oci.oci import referrers
from ecr_oci.oci.models import Descriptor, Manifest, RawManifest, embedded_content
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference


class OutputExistsError(Error):
    """``pull -o DIR`` would overwrite something."""

    exit_code = 2


@dataclass(frozen=True)
class ResolvedBundle:
    """A version as stored: the image the tag points at, and its bundle manifest and config."""

    reference: Reference
    image: RawManifest
    bundle: Descriptor
    manifest: Manifest
    config: BundleConfig


@dataclass(frozen=True)
class PullResult:
    reference: str
    bundle_digest: Digest
    output: Path
    written: dict[str, int] = field(default_factory=dict)  # role -> bytes

    def to_json_obj(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "bundle": str(self.bundle_digest),
            "output": str(self.output),
            "written": self.written,
        }


def resolve_bundle(
    client: RegistryClient, reference: Reference, *, image: RawManifest | None = None
) -> ResolvedBundle:
    """Find the bundle manifest of ``reference`` (tag or digest of the runnable image).

    ``image`` is the manifest ``reference`` names when the caller already fetched it. Raises
    :class:`NotFound` when the image has no bundle referrer (pushed by another tool) and
    :class:`RegistryError` when the bundle manifest or config is malformed.
    """
    if image is None:
        image = client.get_manifest(reference.repository, reference.identifier)
    found = referrers.list_referrers(
        client, reference.repository, image.digest, artifact_type=MediaType.BUNDLE
    )
    if not found:
        raise NotFound(
            f"{reference} has no ecr-oci bundle (no referrer of type {MediaType.BUNDLE}); "
            "was it pushed with `ecr-oci push`?",
            url=f"{client.host}/{reference.repository}",
            status=404,
        )
    # several bundle manifests for one image: the same content pushed again with --force; the
    # newest wins
    bundle = max(found, key=lambda d: (d.annotations or {}).get("org.opencontainers.image.created", ""))
    raw = client.get_manifest(reference.repository, bundle.digest)
    manifest = raw.as_manifest(url=f"{client.host}/{reference.repository}@{bundle.digest}")
    config_bytes = read_config(client, reference.repository, manifest.config)
    try:
        config = BundleConfig.model_validate_json(config_bytes)
    except ValidationError as err:
        raise RegistryError(
            f"bundle config {manifest.config.digest} is malformed: {err.errors()[0]['msg']}",
            url=f"{client.host}/{reference.repository}",
        ) from None
    return ResolvedBundle(reference, image, bundle, manifest, config)


def read_config(client: RegistryClient, repository: str, descriptor: Descriptor) -> bytes:
    """A manifest's config: its inline copy when that verifies (OCI 1.1 descriptor ``data``, which
    ``ecr-oci push`` writes for small configs: one round trip fewer), else the blob. The inline copy
    is only the manifest author's claim, so one that does not match the descriptor's size and digest
    is ignored, as the service's indexer does (``Indexer._config``)."""
    inline = embedded_content(descriptor.to_json_obj())
    return inline if inline is not None else client.get_blob(repository, descriptor.digest)


def pull_bundle(
    client: RegistryClient,
    reference: Reference,
    output: Path,
    *,
    only: Collection[str] = ROLES,
    progress: ProgressSink | None = None,
) -> PullResult:
    """Write the bundle's files to ``output`` (which must not exist or be empty) plus ``ecr.yaml``."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OutputExistsError(f"{output} exists and is not empty; choose a new -o directory")
    resolved = resolve_bundle(client, reference)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    written: dict[str, int] = {}
    try:
        for descriptor in resolved.manifest.layers:
            role = (descriptor.annotations or {}).get(ROLE_ANNOTATION, "")
            record = resolved.config.layer(role)
            if role not in only or record is None or record.path is None:
                continue
            written[role] = _write_layer(
                client,
                resolved.reference.repository,
                descriptor,
                record.path,
                record.target,
                staging,
                progress,
            )
        spec = resolved.config.spec.to_json()
        (staging / "ecr.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        if output.exists():
            output.rmdir()
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PullResult(str(reference), resolved.bundle.digest, output, written)


def _write_layer(
    client: RegistryClient,
    repository: str,
    descriptor: Descriptor,
    path: str,
    target: str | None,
    staging: Path,
    progress: ProgressSink | None,
) -> int:
    destination = staging / path
    if not destination.resolve().is_relative_to(staging.resolve()):
        raise RegistryError(f"bundle layer path {path!r} escapes the output directory", url="")
    if progress:
        progress.start(path, descriptor.size)
    chunks = client.iter_blob(repository, descriptor.digest, progress=progress.advance if progress else None)
    try:
        media_type = MediaType(descriptor.mediaType)
    except ValueError:
        raise RegistryError(
            f"bundle layer {descriptor.digest} has unknown media type {descriptor.mediaType!r}; "
            "upgrade ecr-oci",
            url=f"{client.host}/{repository}",
        ) from None
    if media_type == MediaType.PROFILE:
        destination.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(chunks)  # verified by iter_blob before the join returns
        destination.write_bytes(data)
        if progress:
            progress.finish()
        return len(data)
    prefix = (target or "/data").strip("/") + "/"
    stats = extract_layer(
        chunks,
        destination,
        media_type_compression=media_type.compression,
        strip_prefix=prefix,
        expected_digest=descriptor.digest,
    )
    if progress:
        progress.finish()
    return stats.bytes
