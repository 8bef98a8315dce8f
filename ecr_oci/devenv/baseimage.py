"""A busybox base image built and pushed without any network: busybox-static + umoci + skopeo.

    >>> from pathlib import Path
    >>> from ecr_oci.devenv import build_busybox_base, build_multiplatform_base
    >>> build_busybox_base("127.0.0.1:5000", workdir=Path("/tmp/base"))      # doctest: +SKIP
    '127.0.0.1:5000/base/busybox:1.36@sha256:…'
    >>> build_multiplatform_base("127.0.0.1:5000", workdir=Path("/tmp/multi"))  # doctest: +SKIP
    '127.0.0.1:5000/base/multi:1.36@sha256:…'

Plugins are built on top of a base image (DESIGN.md §2); the demo and the tests need one that runs
under podman and containerd on a machine that reaches no image registry on the internet. The
root file system is the host's static ``/bin/busybox`` plus applet symlinks; ``umoci`` turns it
into an OCI image layout and ``skopeo`` pushes it. Every file gets mtime 0 and the config a fixed
creation time, so the same busybox binary always gives the same digests.

The multi-platform variant is an image index with ``linux/amd64`` (the runnable image) and
``linux/arm64`` (the same tree plus a marker file, config architecture arm64, so its digest
differs; it will not run here and need not): enough to test platform selection. Each platform image
is pushed by digest with skopeo, then the index is PUT with :class:`~ecr_oci.oci.registry.RegistryClient`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ecr_oci.devenv._process import DevEnvError, run_checked
from ecr_oci.digest import Digest
from ecr_oci.errors import RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Index, Platform
from ecr_oci.oci.registry import RegistryClient

__all__ = [
    "DEFAULT_APPLETS",
    "build_busybox_base",
    "build_multiplatform_base",
]

#: Applets linked into ``/bin`` (enough for plugin shell scripts and for tests to look around).
DEFAULT_APPLETS: tuple[str, ...] = (
    "sh", "ash", "echo", "cat", "ls", "sleep", "env", "printf", "test", "[", "true", "false",
    "mkdir", "rm", "cp", "mv", "ln", "date", "head", "tail", "wc", "grep", "sed", "awk", "tr",
    "sort", "uniq", "cut", "id", "hostname", "uname", "ps", "kill", "du", "df", "find", "xargs",
    "tee", "touch", "chmod", "basename", "dirname", "pwd", "readlink", "realpath", "mktemp",
    "sha256sum", "md5sum", "tar", "gzip", "gunzip", "seq", "expr", "od", "stat", "dd", "nproc",
    "timeout", "which", "yes", "wget", "vi", "less", "free", "top",
)  # fmt: skip

#: PATH in the image config (podman and containerd add one when missing, but not the same one).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Fixed creation time, so the config (and so every digest) does not depend on when it was built.
EPOCH = "1970-01-01T00:00:00Z"
#: Marker file in every platform image except linux/amd64 (which is the plain busybox image).
MARKER_PATH = "etc/ecr-oci-platform"


def _parse_platform(platform: str) -> Platform:
    """``os/arch[/variant]`` as a :class:`Platform`; :class:`DevEnvError` for any other shape."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise DevEnvError(f"platform {platform!r} is not os/arch[/variant] (e.g. linux/arm64)")
    return Platform.parse(platform)


@contextmanager
def _registry(registry_host: str, *, insecure: bool) -> Iterator[RegistryClient]:
    """A :class:`RegistryClient` whose :class:`RegistryError` comes out as :class:`DevEnvError`."""
    try:
        with RegistryClient(registry_host, insecure=insecure, timeout=30.0) as client:
            yield client
    except RegistryError as err:
        raise DevEnvError(str(err)) from err


def _make_rootfs(rootfs: Path, *, busybox: Path, applets: Sequence[str], marker: str | None) -> None:
    """Lay out ``/bin/busybox``, its applet links and (optionally) the platform marker file."""
    if rootfs.exists():
        shutil.rmtree(rootfs)
    for folder in ("bin", "etc", "tmp", "usr/bin", "app"):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copyfile(busybox, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "busybox").chmod(0o755)
    for applet in applets:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "usr" / "bin" / "env").symlink_to("/bin/busybox")
    if marker is not None:
        (rootfs / MARKER_PATH).write_text(marker + "\n")
    # Fixed mtimes (children before their folder, links themselves) → the same layer every time.
    for path in sorted(rootfs.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(path, (0, 0), follow_symlinks=False)
    os.utime(rootfs, (0, 0))


def _build_layout_image(
    layout: Path, tag: str, rootfs: Path, *, os_name: str, arch: str, timeout: float
) -> None:
    """``umoci new`` + ``insert`` + ``config``: one image into the layout ``layout`` as ``tag``."""
    image = f"{layout}:{tag}"
    rootless = ["--rootless"] if os.geteuid() != 0 else []
    run_checked(["umoci", "new", "--image", image], timeout=timeout)
    run_checked(
        ["umoci", "insert", *rootless, "--no-history", "--image", image, str(rootfs), "/"],
        timeout=timeout,
    )
    run_checked(
        [
            "umoci", "config", "--image", image, "--no-history",
            "--created", EPOCH,
            "--os", os_name, "--architecture", arch,
            "--config.entrypoint", "/bin/sh",
            "--config.env", f"PATH={IMAGE_PATH}",
            "--config.workingdir", "/",
        ],
        timeout=timeout,
    )  # fmt: skip


def _layout_descriptor(layout: Path, tag: str) -> Descriptor:
    """The descriptor (mediaType, digest, size) that ``layout``'s ``index.json`` has for ``tag``."""
    index = Index.model_validate_json((layout / "index.json").read_bytes())
    for entry in index.manifests:
        if (entry.annotations or {}).get("org.opencontainers.image.ref.name") == tag:
            return Descriptor(mediaType=entry.mediaType, digest=entry.digest, size=entry.size)
    raise DevEnvError(f"tag {tag!r} missing from OCI layout {layout}")


def _skopeo_push(source: str, destination: str, *, insecure: bool, timeout: float) -> None:
    run_checked(
        [
            "skopeo", "copy", "--quiet", "--preserve-digests",
            f"--dest-tls-verify={'false' if insecure else 'true'}",
            source, destination,
        ],
        timeout=timeout,
    )  # fmt: skip


def build_busybox_base(
    registry_host: str,
    *,
    repository: str = "base/busybox",
    tag: str = "1.36",
    workdir: Path,
    platforms: Sequence[str] = ("linux/amd64",),
    busybox: Path = Path("/bin/busybox"),
    applets: Sequence[str] = DEFAULT_APPLETS,
    insecure: bool = True,
    force: bool = False,
    timeout: float = 300.0,
) -> str:
    """Build the busybox base image and push it as ``registry_host/repository:tag``.

    One platform gives an image manifest; several give an image index whose first platform is the
    plain busybox image and the others carry a marker file (they share the amd64 busybox binary).
    Idempotent: when the tag already exists it is left alone (``force=True`` rebuilds, re-pushes).
    ``insecure`` means plain HTTP, as for every local dev registry.

    Returns the reference with its digest, ``HOST/REPO:TAG@sha256:…``. Raises
    :class:`~ecr_oci.devenv.DevEnvError` when busybox, umoci or skopeo is missing or fails, or the
    registry refuses the index.
    """
    if not platforms:
        raise DevEnvError("build_busybox_base needs at least one platform")
    if not force:
        with _registry(registry_host, insecure=insecure) as client:
            existing = client.head_manifest(repository, tag)
        if existing is not None:
            return f"{registry_host}/{repository}:{tag}@{existing.digest}"
    if not busybox.is_file():
        raise DevEnvError(f"{busybox} not found: install the Debian package busybox-static (`make install`)")

    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    layout = workdir / "layout"
    if layout.exists():
        shutil.rmtree(layout)
    run_checked(["umoci", "init", "--layout", str(layout)], timeout=timeout)

    entries: list[tuple[str, Descriptor]] = []  # (tag in the layout, descriptor with platform)
    for number, platform in enumerate(platforms):
        parsed = _parse_platform(platform)
        os_name, arch = parsed.os, parsed.architecture
        layout_tag = f"{tag}-{os_name}-{arch}" if len(platforms) > 1 else tag
        marker = None if number == 0 else f"{platform} (fake: the busybox binary is the host's)"
        rootfs = workdir / f"rootfs-{os_name}-{arch}"
        _make_rootfs(rootfs, busybox=busybox, applets=applets, marker=marker)
        _build_layout_image(layout, layout_tag, rootfs, os_name=os_name, arch=arch, timeout=timeout)
        descriptor = _layout_descriptor(layout, layout_tag)
        entries.append((layout_tag, descriptor.model_copy(update={"platform": parsed})))

    destination = f"docker://{registry_host}/{repository}"
    if len(entries) == 1:
        layout_tag, descriptor = entries[0]
        _skopeo_push(f"oci:{layout}:{layout_tag}", f"{destination}:{tag}", insecure=insecure,
                     timeout=timeout)  # fmt: skip
        return f"{registry_host}/{repository}:{tag}@{descriptor.digest}"

    for layout_tag, descriptor in entries:
        _skopeo_push(f"oci:{layout}:{layout_tag}", f"{destination}@{descriptor.digest}",
                     insecure=insecure, timeout=timeout)  # fmt: skip
    index = Index(manifests=[descriptor for _, descriptor in entries]).to_bytes()
    with _registry(registry_host, insecure=insecure) as client:
        client.put_manifest(repository, tag, index, MediaType.OCI_INDEX)
    return f"{registry_host}/{repository}:{tag}@{Digest.of(index)}"


def build_multiplatform_base(
    registry_host: str,
    *,
    repository: str = "base/multi",
    tag: str = "1.36",
    workdir: Path,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    busybox: Path = Path("/bin/busybox"),
    insecure: bool = True,
    force: bool = False,
    timeout: float = 300.0,
) -> str:
    """Push a two-platform image index (amd64 runnable, arm64 a marked twin) as ``repository:tag``.

    See :func:`build_busybox_base` for arguments, the return value and errors.
    """
    if len(platforms) < 2:
        raise DevEnvError("a multi-platform base needs at least two platforms")
    return build_busybox_base(
        registry_host,
        repository=repository,
        tag=tag,
        workdir=workdir,
        platforms=platforms,
        busybox=busybox,
        insecure=insecure,
        force=force,
        timeout=timeout,
    )
