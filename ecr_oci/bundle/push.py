"""Push a bundle directory: spec → layers → runnable image → bundle manifest → version tag.

    >>> from ecr_oci.bundle.push import push_bundle              # doctest: +SKIP
    >>> result = push_bundle(Path("hello"), registry="127.0.0.1:5000", connect=connect)  # +SKIP
    >>> result.image_reference                                   # doctest: +SKIP
    '127.0.0.1:5000/waggle/hello-sensor:0.1.0@sha256:…'

Order matters for "nothing half-pushed is tagged" (issue 2, part 11): every blob, then the platform
manifests and the bundle manifest **by digest**, then the referrer record and (with a key) the
signatures, and the version tag last.
A push that dies anywhere before the tag leaves only untagged content, and a rerun skips the blobs
that made it (existence check per blob). Versions are immutable unless ``force``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecr_oci.bundle import layers as layer_build
from ecr_oci.bundle.config import (
    ROLE_ANNOTATION,
    Builder,
    BundleConfig,
    ImageRef,
    LayerRecord,
    PlatformImage,
)
from ecr_oci.bundle.image import (
    AppendedLayer,
    RuntimeSettings,
    derive_config,
    derive_manifest,
    select_platforms,
)
from ecr_oci.bundle.layer_cache import LayerCache, choose_compression_cached, measure_cached
from ecr_oci.bundle.progress import ProgressSink
from ecr_oci.bundle.spec import BundleSpec
from ecr_oci.bundle.spec_loader import LoadedSpec, load_spec
from ecr_oci.digest import Digest
from ecr_oci.errors import ImmutableVersionError, VerificationError
from ecr_oci.mediatypes import MediaType, layer_media_type
from ecr_oci.oci import referrers
from ecr_oci.oci.models import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    RawManifest,
    embedded,
    parse_config,
)
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from ecr_oci.signing.provenance import CIContext

#: ``connect(host)`` gives a client for that registry host (credentials and TLS chosen by the caller).
Connect = Callable[[str], RegistryClient]


@dataclass(frozen=True)
class PushedLayer:
    role: str
    digest: Digest
    size: int
    media_type: str
    uploaded: bool


@dataclass(frozen=True)
class PushResult:
    """What ``ecr-oci push`` prints (``--json`` dumps this)."""

    repository: str
    registry: str
    version: str
    image_digest: Digest
    image_media_type: str
    bundle_digest: Digest
    platforms: list[str]
    layers: list[PushedLayer]
    bytes_uploaded: int
    unchanged: bool = False
    signed: list[Digest] = field(default_factory=list)

    @property
    def image_reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.version}@{self.image_digest}"

    def to_json_obj(self) -> dict[str, object]:
        return {
            "image": self.image_reference,
            "imageDigest": str(self.image_digest),
            "imageMediaType": self.image_media_type,
            "bundle": str(self.bundle_digest),
            "repository": f"{self.registry}/{self.repository}",
            "version": self.version,
            "platforms": self.platforms,
            "layers": [
                {
                    "role": layer.role,
                    "digest": str(layer.digest),
                    "size": layer.size,
                    "mediaType": layer.media_type,
                    "uploaded": layer.uploaded,
                }
                for layer in self.layers
            ],
            "bytesUploaded": self.bytes_uploaded,
            "unchanged": self.unchanged,
            "signed": [str(digest) for digest in self.signed],
        }


@dataclass(frozen=True)
class _BuiltLayer:
    role: str
    plan: layer_build.LayerPlan
    digests: layer_build.LayerDigests
    path: str
    target: str

    def opener(self, epoch: int) -> Callable[[int], Iterable[bytes]]:
        def open_at(offset: int) -> Iterator[bytes]:
            stream = layer_build.stream(self.plan, compression=self.digests.compression, epoch=epoch)
            return _skip(stream, offset)

        return open_at


def push_bundle(
    directory: Path,
    *,
    registry: str,
    connect: Connect,
    force: bool = False,
    epoch: int = 0,
    cache: LayerCache | None = None,
    progress: ProgressSink | None = None,
    now: datetime | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
    ci: CIContext | None = None,
) -> PushResult:
    """Validate ``directory``, build and push its bundle to ``registry``; see the module docstring.

    Raises :class:`~ecr_oci.errors.BundleSpecError` for a bad ``ecr.yaml`` (before any network
    traffic), :class:`~ecr_oci.errors.ImmutableVersionError` when the version exists with other
    content, :class:`~ecr_oci.errors.RegistryError` for registry failures.

    With ``signer`` the image and each platform manifest get a cosign signature, and the image a
    SLSA v1 provenance attestation (``ci`` says which CI run built it), before the version tag is
    written: a tagged version is never unsigned.
    """
    started = datetime.now(UTC)
    loaded = load_spec(directory)
    spec = loaded.spec
    repository = f"{spec.metadata.namespace}/{spec.metadata.name}"
    tag = spec.metadata.version
    built = _build_layers(loaded, epoch=epoch, cache=cache)

    client = connect(registry)
    base_ref = Reference.parse(spec.runtime.base)
    base_client = client if base_ref.registry == registry else connect(base_ref.registry)
    base_raw = base_client.get_manifest(base_ref.repository, base_ref.identifier)

    created = _rfc3339(epoch)
    images = _assemble_platform_images(
        spec, built, base_client=base_client, base_ref=base_ref, base_raw=base_raw, created=created
    )
    if len(images) == 1:
        image_raw = images[0].manifest
    else:
        index = Index(
            manifests=[image.manifest.descriptor(platform=image.platform) for image in images],
            annotations=_image_annotations(spec, base_ref, base_raw.digest, created),
        )
        data = index.to_bytes()
        image_raw = RawManifest(MediaType.OCI_INDEX, Digest.of(data), data)

    # refuse before sending a byte: the digests of everything are known without uploading
    current = client.head_manifest(repository, tag)
    if current is not None and current.digest != image_raw.digest and not force:
        raise ImmutableVersionError(
            f"{registry}/{repository}:{tag} already exists with other content "
            f"({current.digest}); bump metadata.version in ecr.yaml, or pass --force to move the tag"
        )

    pushed = _Uploader(client, repository, progress)
    for layer in built:
        pushed.blob(layer.digests.digest, layer.digests.size, layer.opener(epoch), layer.role)
    for image in images:
        for base_layer in image.base_layers:
            pushed.copy_from(base_client, base_ref.repository, base_layer)
        pushed.small(image.config)
        client.put_manifest(repository, image.manifest.digest, image.manifest.data, image.manifest.media_type)

    if image_raw.is_index:
        client.put_manifest(repository, image_raw.digest, image_raw.data, image_raw.media_type)
    existing_bundle = _existing_bundle(client, repository, image_raw.digest)
    if existing_bundle is not None and current is not None and current.digest == image_raw.digest:
        bundle_digest = existing_bundle
        unchanged = True
    else:
        bundle_digest = _push_bundle_manifest(
            pushed,
            loaded,
            built,
            [(i.platform, i.manifest) for i in images],
            image_raw,
            now=now or datetime.now(UTC),
        )
        unchanged = False
    # what vouches for the image goes on before the tag
    signed = []
    if signer is not None:
        signed = _sign_and_attest(
            client,
            Reference(registry=registry, repository=repository),
            image_raw,
            signer,
            provenance_inputs=dict(
                source=spec.metadata.source,
                ecr_yaml_digest=Digest.of(loaded.raw),
                base_image=base_ref,
                base_digest=base_raw.digest,
                platforms=[str(i.platform) for i in images],
                compression={layer.role: layer.digests.compression for layer in built},
                source_date_epoch=epoch,
                builder_version=package_version("ecr-oci"),
                started_on=started,
                ci=ci,
                bundle_digest=bundle_digest,
                layers={layer.role: layer.digests.digest for layer in built},
            ),
            already_pushed=unchanged,
        )
    if current is None or current.digest != image_raw.digest:
        client.put_manifest(repository, tag, image_raw.data, image_raw.media_type)

    return PushResult(
        repository=repository,
        registry=registry,
        version=tag,
        image_digest=image_raw.digest,
        image_media_type=image_raw.media_type,
        bundle_digest=bundle_digest,
        platforms=[str(i.platform) for i in images],
        layers=[
            PushedLayer(
                role=layer.role,
                digest=layer.digests.digest,
                size=layer.digests.size,
                media_type=layer_media_type(layer.role, layer.digests.compression),
                uploaded=layer.digests.digest in pushed.uploaded,
            )
            for layer in built
        ],
        bytes_uploaded=pushed.bytes_uploaded,
        unchanged=unchanged,
        signed=signed,
    )


def _build_layers(loaded: LoadedSpec, *, epoch: int, cache: LayerCache | None) -> list[_BuiltLayer]:
    """Scan and digest the code, model and data layers (cached by file stat)."""
    spec = loaded.spec
    wanted: list[tuple[str, str, str, list[str], str]] = [
        ("code", spec.code.path, spec.code.target, list(spec.code.exclude), spec.code.compression)
    ]
    if spec.model is not None:
        wanted.insert(0, ("model", spec.model.path, spec.model.target, [], spec.model.compression))
    if spec.data is not None:
        wanted.append(("data", spec.data.path, "/data", [], "gzip"))
    built = []
    for role, path, target, exclude, requested in wanted:
        plan = layer_build.scan(loaded.directory / path, target=target, exclude=exclude)
        compression = choose_compression_cached(plan, cache, requested)
        digests = measure_cached(plan, cache, compression=compression, epoch=epoch)
        built.append(_BuiltLayer(role, plan, digests, path, target))
    return built


class _Uploader:
    """Uploads into one repository, remembering what it sent (for the result and no double work)."""

    def __init__(self, client: RegistryClient, repository: str, progress: ProgressSink | None) -> None:
        self.client = client
        self.repository = repository
        self.progress = progress
        self.uploaded: set[Digest] = set()
        self.present: set[Digest] = set()
        self.bytes_uploaded = 0

    def blob(
        self,
        digest: Digest,
        size: int,
        opener: Callable[[int], Iterable[bytes]],
        label: str,
        *,
        check_exists: bool = True,
    ) -> None:
        if digest in self.present:
            return
        if self.progress:
            self.progress.start(label, size)
        sent = self.client.push_blob(
            self.repository,
            digest,
            size,
            opener,
            progress=self.progress.advance if self.progress else None,
            check_exists=check_exists,
        )
        if self.progress:
            self.progress.finish()
        if sent:
            self.uploaded.add(digest)
            self.bytes_uploaded += size
        self.present.add(digest)

    def small(self, data: bytes) -> Descriptor:
        digest = Digest.of(data)
        self.blob(digest, len(data), lambda offset: [data[offset:]], "metadata")
        return Descriptor(mediaType="application/octet-stream", digest=digest, size=len(data))

    def copy_from(self, source: RegistryClient, source_repository: str, layer: Descriptor) -> None:
        """Make a base-image blob present here: mount (same host), or stream it across hosts."""
        if layer.digest in self.present or layer.urls:
            return
        if self.client.blob_size(self.repository, layer.digest) is not None:
            self.present.add(layer.digest)
            return
        if source is self.client and self.client.mount_blob(self.repository, layer.digest, source_repository):
            self.present.add(layer.digest)
            return
        self.blob(
            layer.digest,
            layer.size,
            lambda offset: _skip(source.iter_blob(source_repository, layer.digest), offset),
            "base layer",
            check_exists=False,  # checked above
        )


@dataclass(frozen=True)
class _PlatformImage:
    """One platform's runnable image, assembled but not yet pushed."""

    platform: Platform
    base_layers: list[Descriptor]
    config: bytes
    manifest: RawManifest


def _assemble_platform_images(
    spec: BundleSpec,
    built: list[_BuiltLayer],
    *,
    base_client: RegistryClient,
    base_ref: Reference,
    base_raw: RawManifest,
    created: str,
) -> list[_PlatformImage]:
    """For each selected platform: the base's layers plus ours, and the rewritten config."""
    requested = spec.platform_list() or []

    def config_of(manifest: Manifest) -> ImageConfig:
        return parse_config(base_client.get_blob(base_ref.repository, manifest.config.digest))

    # (platform, base manifest, its config): each config is fetched once
    bases: list[tuple[Platform, RawManifest, ImageConfig]] = []
    if base_raw.is_index:
        for platform, entry in select_platforms(base_raw.as_index(), requested, base=str(base_ref)):
            raw = base_client.get_manifest(base_ref.repository, entry.digest)
            bases.append((platform, raw, config_of(raw.as_manifest())))
    else:
        single = config_of(base_raw.as_manifest())
        only = Platform(os=single.os, architecture=single.architecture, variant=single.variant)
        select_platforms(Index(manifests=[base_raw.descriptor(platform=only)]), requested, base=str(base_ref))
        bases.append((only, base_raw, single))

    in_image = [
        AppendedLayer(
            role=layer.role,
            digest=layer.digests.digest,
            diff_id=layer.digests.diff_id,
            size=layer.digests.size,
            compression=layer.digests.compression,
            created_by=f"ecr-oci: {layer.role} {layer.path} -> {layer.target}",
        )
        for layer in built
        if layer.role in ("model", "code")
    ]
    labels = _image_labels(spec, base_ref, base_raw.digest, created)
    # inputs reach the code as environment variables (INTERVAL for input ``interval``); the image
    # carries their defaults so a plain ``podman run`` works, and a node overrides them with -e
    settings = RuntimeSettings(
        entrypoint=spec.runtime.entrypoint,
        cmd=spec.runtime.cmd,
        env={**spec.input_defaults_env(), **spec.runtime.env},
        workdir=spec.runtime.workdir,
    )
    images = []
    for platform, raw, base_config in bases:
        base_manifest = raw.as_manifest()
        config_bytes = derive_config(
            base_config, appended=in_image, settings=settings, labels=labels, created=created
        ).to_bytes()
        config_desc = embedded(
            Descriptor(
                mediaType=MediaType.OCI_CONFIG, digest=Digest.of(config_bytes), size=len(config_bytes)
            ),
            config_bytes,
        )
        manifest = derive_manifest(
            base_manifest,
            config=config_desc,
            appended=in_image,
            annotations=_image_annotations(spec, base_ref, raw.digest, created),
        ).to_bytes()
        images.append(
            _PlatformImage(
                platform,
                list(base_manifest.layers),
                config_bytes,
                RawManifest(MediaType.OCI_MANIFEST, Digest.of(manifest), manifest),
            )
        )
    return images


def _push_bundle_manifest(
    pushed: _Uploader,
    loaded: LoadedSpec,
    built: list[_BuiltLayer],
    images: list[tuple[Platform, RawManifest]],
    image_raw: RawManifest,
    *,
    now: datetime,
) -> Digest:
    """The bundle manifest: config = metadata, layers = our media types over the same blobs."""
    spec = loaded.spec
    records = [
        LayerRecord(
            role=layer.role,
            mediaType=layer_media_type(layer.role, layer.digests.compression),
            digest=layer.digests.digest,
            size=layer.digests.size,
            diffID=layer.digests.diff_id,
            files=layer.digests.files,
            path=layer.path,
            target=layer.target if layer.role != "data" else None,
        )
        for layer in built
    ]
    if spec.profile is not None:
        profile_bytes = (loaded.directory / spec.profile.path).read_bytes()
        profile = pushed.small(profile_bytes)
        records.append(
            LayerRecord(
                role="profile",
                mediaType=MediaType.PROFILE,
                digest=profile.digest,
                size=profile.size,
                path=spec.profile.path,
            )
        )
    config = BundleConfig(
        spec=spec,
        image=ImageRef(mediaType=image_raw.media_type, digest=image_raw.digest, size=len(image_raw.data)),
        platforms=[
            PlatformImage(os=p.os, architecture=p.architecture, variant=p.variant, digest=raw.digest)
            for p, raw in images
        ],
        layers=records,
        source=spec.metadata.source,
        created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        builder=Builder(version=package_version("ecr-oci")),
        ecrYamlDigest=Digest.of(loaded.raw),
    )
    config_data = json.dumps(
        config.model_dump(mode="json", by_alias=True, exclude_none=True),
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    config_desc = pushed.small(config_data)
    manifest = Manifest(
        artifactType=MediaType.BUNDLE,
        config=embedded(config_desc.model_copy(update={"mediaType": MediaType.BUNDLE_CONFIG}), config_data),
        layers=[
            Descriptor(
                mediaType=r.mediaType, digest=r.digest, size=r.size, annotations={ROLE_ANNOTATION: r.role}
            )
            for r in records
        ],
        subject=image_raw.descriptor(),
        annotations={
            "org.opencontainers.image.created": config.created,
            "org.opencontainers.image.title": f"{spec.metadata.namespace}/{spec.metadata.name}",
            "org.opencontainers.image.version": spec.metadata.version,
        },
    )
    return referrers.attach(pushed.client, pushed.repository, manifest).digest


def _sign_and_attest(
    client: RegistryClient,
    home: Reference,
    image: RawManifest,
    signer: ec.EllipticCurvePrivateKey,
    *,
    provenance_inputs: dict[str, Any],
    already_pushed: bool,
) -> list[Digest]:
    """Sign the image (and each platform manifest) and attest its SLSA provenance.

    The signing stack is imported here, not at module level: an unsigned push should not pay its
    import time (start-up counts in a no-op push). An unchanged re-push adds a provenance attestation
    only if ``signer`` has not attested one yet (each has its own timestamps, so it would pile up).
    """
    from ecr_oci.signing.attest import attest_image, verify_attestations
    from ecr_oci.signing.provenance import PREDICATE_TYPE, build_provenance
    from ecr_oci.signing.sign import sign_manifest

    signed = [s.digest for s in sign_manifest(client, home, image, signer)]
    image_ref = home.with_digest(image.digest)
    if already_pushed:
        try:
            verify_attestations(client, image_ref, signer.public_key(), predicate_type=PREDICATE_TYPE)
            return signed
        except VerificationError:
            pass  # not attested by this key yet
    provenance = build_provenance(**provenance_inputs, finished_on=datetime.now(UTC))
    attest_image(client, image_ref, signer, predicate=provenance, predicate_type=PREDICATE_TYPE)
    return signed


def _existing_bundle(client: RegistryClient, repository: str, image: Digest) -> Digest | None:
    found = referrers.list_referrers(client, repository, image, artifact_type=MediaType.BUNDLE)
    return found[-1].digest if found else None


def _image_labels(spec: BundleSpec, base_ref: Reference, base_digest: Digest, created: str) -> dict[str, str]:
    """OCI labels (image-spec annotations.md keys) plus ours, so ``podman inspect`` tells all."""
    meta = spec.metadata
    labels = {
        "org.opencontainers.image.title": f"{meta.namespace}/{meta.name}",
        "org.opencontainers.image.description": meta.description,
        "org.opencontainers.image.version": meta.version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.base.name": str(base_ref),
        "org.opencontainers.image.base.digest": str(base_digest),
        "org.waggle-sensor.ecr.namespace": meta.namespace,
        "org.waggle-sensor.ecr.name": meta.name,
    }
    if meta.license:
        labels["org.opencontainers.image.licenses"] = meta.license
    if meta.authors:
        labels["org.opencontainers.image.authors"] = ", ".join(
            f"{a.name} <{a.email}>" if a.email else a.name for a in meta.authors
        )
    if meta.homepage:
        labels["org.opencontainers.image.url"] = str(meta.homepage)
    if meta.source is not None:
        if meta.source.url:
            labels["org.opencontainers.image.source"] = str(meta.source.url)
        if meta.source.commit:
            labels["org.opencontainers.image.revision"] = meta.source.commit
    runtime = spec.runtime
    if runtime.requirements:
        labels["org.waggle-sensor.ecr.requirements"] = json.dumps(list(runtime.requirements))
    if runtime.resources is not None:
        labels["org.waggle-sensor.ecr.resources"] = runtime.resources.model_dump_json(exclude_none=True)
    if spec.inputs:
        labels["org.waggle-sensor.ecr.inputs"] = json.dumps(
            [i.model_dump(mode="json", exclude_none=True) for i in spec.inputs]
        )
    return labels


def _image_annotations(
    spec: BundleSpec, base_ref: Reference, base_digest: Digest, created: str
) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": f"{spec.metadata.namespace}/{spec.metadata.name}",
        "org.opencontainers.image.version": spec.metadata.version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.base.name": str(base_ref),
        "org.opencontainers.image.base.digest": str(base_digest),
    }


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _skip(chunks: Iterable[bytes], offset: int) -> Iterator[bytes]:
    """Drop the first ``offset`` bytes of a stream (resuming an upload of regenerated content)."""
    for chunk in chunks:
        if offset >= len(chunk):
            offset -= len(chunk)
            continue
        yield chunk[offset:] if offset else chunk
        offset = 0
