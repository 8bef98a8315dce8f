"""Runnable-image assembly: the base config and manifest plus our layers, and platform selection."""

from __future__ import annotations

import pytest

from ecr_oci.bundle.config import ROLE_ANNOTATION
from ecr_oci.bundle.image import (
    AppendedLayer,
    RuntimeSettings,
    derive_config,
    derive_manifest,
    select_platforms,
)
from ecr_oci.digest import Digest
from ecr_oci.errors import BundleSpecError
from ecr_oci.mediatypes import MediaType
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

CREATED = "2024-01-01T00:00:00Z"
BASE_DIFF_IDS = [Digest.of(b"base-1"), Digest.of(b"base-2")]


def layer(role: str, compression: str | None = "gzip") -> AppendedLayer:
    return AppendedLayer(
        role=role,
        digest=Digest.of(f"{role}-blob".encode()),
        diff_id=Digest.of(f"{role}-tar".encode()),
        size=100,
        compression=compression,
        created_by=f"ecr-oci {role}",
    )


MODEL, CODE = layer("model", None), layer("code", "zstd")


def base_config(**container: object) -> ImageConfig:
    return ImageConfig(
        architecture="amd64",
        os="linux",
        created="2020-01-01T00:00:00Z",
        config=ContainerConfig.model_validate(container) if container else None,
        rootfs=RootFS(diff_ids=BASE_DIFF_IDS),
        history=[History(created_by="base layer 1"), History(created_by="base layer 2")],
    )


def derive(
    base: ImageConfig, settings: RuntimeSettings | None = None, labels: dict[str, str] | None = None
) -> ImageConfig:
    return derive_config(
        base,
        appended=[MODEL, CODE],
        settings=settings or RuntimeSettings(entrypoint=["/app/run.sh"]),
        labels=labels or {},
        created=CREATED,
    )


# -- derive_config ----------------------------------------------------------------------------------


def test_diff_ids_of_our_layers_follow_the_base_in_order() -> None:
    config = derive(base_config())
    assert config.rootfs.diff_ids == [*BASE_DIFF_IDS, MODEL.diff_id, CODE.diff_id]


def test_history_is_appended_one_entry_per_layer() -> None:
    config = derive(base_config())
    assert config.history is not None
    assert [h.created_by for h in config.history] == [
        "base layer 1",
        "base layer 2",
        "ecr-oci model",
        "ecr-oci code",
    ]
    assert all(h.created == CREATED for h in config.history[2:])
    # one non-empty history entry per diff_id, as runtimes expect
    assert len([h for h in config.history if not h.empty_layer]) == len(config.rootfs.diff_ids)


def test_env_merges_by_name_and_ours_win() -> None:
    base = base_config(Env=["PATH=/usr/bin:/bin", "MODE=base", "KEEP=1"])
    config = derive(base, RuntimeSettings(entrypoint=["/x"], env={"MODE": "ours", "NEW": "a=b"}))
    assert config.config is not None
    assert config.config.Env == ["PATH=/usr/bin:/bin", "MODE=ours", "KEEP=1", "NEW=a=b"]


def test_cmd_of_the_base_is_reset_when_we_set_the_entrypoint() -> None:
    base = base_config(Entrypoint=["/bin/sh", "-c"], Cmd=["echo base"])
    config = derive(base, RuntimeSettings(entrypoint=["/app/run.sh"]))
    assert config.config is not None
    assert config.config.Entrypoint == ["/app/run.sh"]
    assert config.config.Cmd is None


def test_our_cmd_is_used_when_given() -> None:
    config = derive(base_config(Cmd=["sh"]), RuntimeSettings(entrypoint=["/app/run.sh"], cmd=["--once"]))
    assert config.config is not None and config.config.Cmd == ["--once"]


def test_labels_merge_and_ours_win() -> None:
    base = base_config(Labels={"org.opencontainers.image.title": "busybox", "vendor": "base"})
    config = derive(base, labels={"org.opencontainers.image.title": "hello-sensor", "ours": "1"})
    assert config.config is not None
    assert config.config.Labels == {
        "org.opencontainers.image.title": "hello-sensor",
        "vendor": "base",
        "ours": "1",
    }


def test_workdir_defaults_to_the_base_and_ours_win() -> None:
    base = base_config(WorkingDir="/base")
    kept = derive(base)
    assert kept.config is not None and kept.config.WorkingDir == "/base"
    ours = derive(base, RuntimeSettings(entrypoint=["/x"], workdir="/app"))
    assert ours.config is not None and ours.config.WorkingDir == "/app"


def test_other_base_settings_are_kept_and_created_is_ours() -> None:
    base = base_config(User="1000", StopSignal="SIGINT")
    config = derive(base)
    assert config.config is not None
    assert (config.config.User, config.config.StopSignal) == ("1000", "SIGINT")
    assert (config.architecture, config.os, config.created) == ("amd64", "linux", CREATED)


def test_base_without_container_config_or_history() -> None:
    base = ImageConfig(architecture="arm64", os="linux", rootfs=RootFS(diff_ids=[]))
    config = derive(base, RuntimeSettings(entrypoint=["/x"], env={"A": "1"}))
    assert config.config is not None
    assert config.config.Env == ["A=1"]
    assert config.config.Labels == {}
    assert config.history is not None and len(config.history) == 2
    assert config.rootfs.diff_ids == [MODEL.diff_id, CODE.diff_id]


def test_derive_config_leaves_the_base_unchanged() -> None:
    base = base_config(Env=["A=1"])
    before = base.to_bytes()
    derive(base, RuntimeSettings(entrypoint=["/x"], env={"A": "2"}))
    assert base.to_bytes() == before


# -- derive_manifest --------------------------------------------------------------------------------


def docker_base_manifest() -> Manifest:
    return Manifest(
        mediaType=MediaType.DOCKER_MANIFEST,
        config=Descriptor(mediaType=MediaType.DOCKER_CONFIG, digest=Digest.of(b"cfg"), size=3),
        layers=[
            Descriptor(mediaType=MediaType.DOCKER_LAYER_GZIP, digest=Digest.of(b"l1"), size=10),
            Descriptor(
                mediaType="application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                digest=Digest.of(b"l2"),
                size=20,
                urls=["https://example.org/l2"],
            ),
            Descriptor(mediaType=MediaType.OCI_LAYER_ZSTD, digest=Digest.of(b"l3"), size=30),
        ],
    )


def test_docker_media_types_of_base_layers_become_oci() -> None:
    new_config = Descriptor(mediaType=MediaType.DOCKER_CONFIG, digest=Digest.of(b"new"), size=3)
    manifest = derive_manifest(docker_base_manifest(), config=new_config, appended=[], annotations={})
    assert manifest.mediaType == MediaType.OCI_MANIFEST
    assert manifest.config.mediaType == MediaType.OCI_CONFIG
    assert manifest.config.digest == Digest.of(b"new")
    assert [d.mediaType for d in manifest.layers] == [
        MediaType.OCI_LAYER_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        MediaType.OCI_LAYER_ZSTD,
    ]
    # same blobs: only the type names change
    assert [(d.digest, d.size) for d in manifest.layers] == [
        (d.digest, d.size) for d in docker_base_manifest().layers
    ]
    assert manifest.layers[1].urls == ["https://example.org/l2"]
    assert manifest.annotations is None


def test_our_layers_follow_the_base_annotated_with_their_role() -> None:
    config = Descriptor(mediaType=MediaType.OCI_CONFIG, digest=Digest.of(b"new"), size=3)
    manifest = derive_manifest(
        docker_base_manifest(),
        config=config,
        appended=[MODEL, CODE],
        annotations={"org.opencontainers.image.version": "0.1.0"},
    )
    ours = manifest.layers[3:]
    assert [(d.digest, d.size) for d in ours] == [(MODEL.digest, 100), (CODE.digest, 100)]
    assert [d.mediaType for d in ours] == [MediaType.OCI_LAYER_TAR, MediaType.OCI_LAYER_ZSTD]
    assert [d.annotations for d in ours] == [{ROLE_ANNOTATION: "model"}, {ROLE_ANNOTATION: "code"}]
    assert manifest.annotations == {"org.opencontainers.image.version": "0.1.0"}


def test_gzip_layer_gets_the_standard_oci_gzip_type() -> None:
    assert layer("code", "gzip").descriptor().mediaType == MediaType.OCI_LAYER_GZIP


# -- select_platforms -------------------------------------------------------------------------------


def entry(platform: str | None, name: str) -> Descriptor:
    return Descriptor(
        mediaType=MediaType.OCI_MANIFEST,
        digest=Digest.of(name.encode()),
        size=1,
        platform=Platform.parse(platform) if platform else None,
    )


AMD64 = entry("linux/amd64", "amd64")
ARM64 = entry("linux/arm64/v8", "arm64")
ARMV6 = entry("linux/arm/v6", "armv6")
ARMV7 = entry("linux/arm/v7", "armv7")
ATTESTATION = entry("unknown/unknown", "attestation")
NO_PLATFORM = entry(None, "no-platform")
INDEX = Index(manifests=[AMD64, ATTESTATION, ARM64, ARMV6, ARMV7, NO_PLATFORM])


def chosen(requested: list[str]) -> list[Descriptor]:
    pairs = select_platforms(INDEX, [Platform.parse(p) for p in requested], base="reg/base:1")
    for platform, descriptor in pairs:
        assert descriptor.platform == platform
    return [descriptor for _, descriptor in pairs]


def test_all_real_platforms_when_none_requested() -> None:
    assert chosen([]) == [AMD64, ARM64, ARMV6, ARMV7]


def test_requested_platforms_in_requested_order() -> None:
    assert chosen(["linux/arm64", "linux/amd64"]) == [ARM64, AMD64]


def test_variant_must_match_when_requested() -> None:
    assert chosen(["linux/arm/v7"]) == [ARMV7]
    assert chosen(["linux/arm64/v8"]) == [ARM64]


def test_no_variant_requested_takes_the_first_variant_offered() -> None:
    assert chosen(["linux/arm"]) == [ARMV6]


def test_attestation_entries_are_never_selected() -> None:
    with pytest.raises(BundleSpecError):
        chosen(["unknown/unknown"])


def test_missing_platform_raises_listing_what_the_base_offers() -> None:
    with pytest.raises(BundleSpecError) as caught:
        chosen(["linux/amd64", "linux/riscv64"])
    err = caught.value
    assert err.field == "runtime.platforms"
    assert err.file == "ecr.yaml"
    message = str(err)
    assert "reg/base:1" in message and "linux/riscv64" in message
    assert "linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v7" in message
    assert "unknown" not in message


def test_missing_variant_raises() -> None:
    with pytest.raises(BundleSpecError, match="linux/arm/v5"):
        chosen(["linux/arm/v5"])


def test_index_without_platforms_offers_none() -> None:
    with pytest.raises(BundleSpecError, match=r"offers: none"):
        select_platforms(Index(manifests=[NO_PLATFORM]), [Platform.parse("linux/amd64")], base="b")
