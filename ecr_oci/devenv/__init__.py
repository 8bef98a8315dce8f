"""Local stand-ins for the outside world: a registry, a base image, podman and containerd "nodes".

    >>> from pathlib import Path
    >>> from ecr_oci.devenv import LocalRegistry, PodmanEnv, build_busybox_base
    >>> with LocalRegistry(Path("/tmp/reg")) as reg:                    # doctest: +SKIP
    ...     base = build_busybox_base(reg.host, workdir=Path("/tmp/base"))
    ...     node = PodmanEnv(Path("/tmp/pm"), insecure_registries=[reg.host])
    ...     node.run_image(base, "-c", "echo hi")
    'hi\\n'

Used by both the test fixtures (``tests/fixtures``) and ``ecr-oci dev`` (``make run``), so the demo
and the tests start these programs the same way. Like the rest of the library, nothing here reads
environment variables or config files: every path and port is passed in. Programs are the Debian
packages ``make install`` installs; a missing one raises :class:`MissingProgramError`.
"""

from __future__ import annotations

from ecr_oci.devenv._process import CommandError, DevEnvError, MissingProgramError, require_program
from ecr_oci.devenv.baseimage import build_busybox_base, build_multiplatform_base
from ecr_oci.devenv.containerd import ContainerRunError, LocalContainerd
from ecr_oci.devenv.podman import PodmanEnv
from ecr_oci.devenv.registry import LocalRegistry, LoggedResponse, free_port

__all__ = [
    "CommandError",
    "ContainerRunError",
    "DevEnvError",
    "LocalContainerd",
    "LocalRegistry",
    "LoggedResponse",
    "MissingProgramError",
    "PodmanEnv",
    "build_busybox_base",
    "build_multiplatform_base",
    "free_port",
    "require_program",
]
