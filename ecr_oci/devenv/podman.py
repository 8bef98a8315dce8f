"""A podman "node" whose whole state lives in one folder: pull and run what ecr-oci pushed.

    >>> from pathlib import Path
    >>> from ecr_oci.devenv import PodmanEnv
    >>> node = PodmanEnv(Path("/tmp/n"), insecure_registries=["127.0.0.1:5000"])  # doctest: +SKIP
    >>> node.run_image("127.0.0.1:5000/base/busybox:1.36", "-c", "echo hello")  # doctest: +SKIP
    'hello\\n'

podman reads three config files, and each can be pointed elsewhere by an environment variable of the
child process (``CONTAINERS_CONF``, ``CONTAINERS_REGISTRIES_CONF``, ``CONTAINERS_STORAGE_CONF``). We
write all three under ``root`` so a test never touches the machine's ``/var/lib/containers`` and two
environments never share images:

- ``containers.conf``: ``runtime = "runc"`` (crun fails on these machines: no CAP_SYS_RESOURCE,
  hybrid cgroups), ``cgroup_manager = "cgroupfs"`` and ``events_logger = "file"`` (no systemd),
  ``default_ulimits`` nofile/nproc 1024:1024 (the default raise is refused without
  CAP_SYS_RESOURCE), and by default ``netns = "none"`` so a run needs no bridge or iptables.
- ``registries.conf``: each local registry (``127.0.0.1:PORT``) as ``insecure = true``, i.e. plain
  HTTP; no unqualified search registries (a short name never reaches out to the internet).
- ``storage.conf``: graphroot/runroot inside ``root``; driver ``overlay`` (works here as root on
  ext4; pass ``storage_driver="vfs"`` where overlay mounts are not allowed).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ecr_oci.devenv._process import run_checked

__all__ = ["PodmanEnv"]


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON string escaping is a subset TOML accepts)."""
    return json.dumps(value)


def _toml_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_toml_string(value) for value in values) + "]"


class PodmanEnv:
    """podman with its configuration, storage and run state confined to ``root``.

    The config files are written when the object is built (and again by
    :meth:`add_insecure_registry`); nothing starts until a command runs. ``insecure_registries``
    are the ``HOST:PORT`` registries to reach over plain HTTP; ``network`` is the ``netns`` mode of
    runs (``"none"``; ``None`` keeps podman's default bridge).
    """

    def __init__(
        self,
        root: Path,
        *,
        insecure_registries: Iterable[str] = (),
        storage_driver: str = "overlay",
        network: str | None = "none",
        runtime: str = "runc",
        ulimits: Sequence[str] = ("nofile=1024:1024", "nproc=1024:1024"),
        program: str = "podman",
        timeout: float = 300.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.storage_driver = storage_driver
        self.network = network
        self.runtime = runtime
        self.ulimits = tuple(ulimits)
        self.program = program
        self.timeout = timeout
        self._insecure: list[str] = []
        for host in insecure_registries:
            if host not in self._insecure:
                self._insecure.append(host)
        self.write_config()

    # -- config -------------------------------------------------------------------------------

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def registries_conf(self) -> Path:
        return self.root / "registries.conf"

    @property
    def storage_conf(self) -> Path:
        return self.root / "storage.conf"

    @property
    def insecure_registries(self) -> tuple[str, ...]:
        return tuple(self._insecure)

    def write_config(self) -> None:
        """(Re)write the three config files and create the state folders under ``root``."""
        for folder in ("storage", "run", "tmp", "volumes", "networks"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        containers = [
            "[containers]",
            f"default_ulimits = {_toml_list(self.ulimits)}",
        ]
        if self.network is not None:
            containers.append(f"netns = {_toml_string(self.network)}")
        containers += [
            "",
            "[engine]",
            f"runtime = {_toml_string(self.runtime)}",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f"events_logfile_path = {_toml_string(str(self.root / 'events.log'))}",
            # tmp_dir defaults to /run/libpod, which every podman on the machine shares.
            f"tmp_dir = {_toml_string(str(self.root / 'tmp'))}",
            f"volume_path = {_toml_string(str(self.root / 'volumes'))}",
            "",
            "[network]",
            f"network_config_dir = {_toml_string(str(self.root / 'networks'))}",
        ]
        self.containers_conf.write_text("\n".join(containers) + "\n")

        registries = ["unqualified-search-registries = []"]
        for host in self._insecure:
            registries += [
                "",
                "[[registry]]",
                f"location = {_toml_string(host)}",
                "insecure = true",
            ]
        self.registries_conf.write_text("\n".join(registries) + "\n")

        storage = [
            "[storage]",
            f"driver = {_toml_string(self.storage_driver)}",
            f"graphroot = {_toml_string(str(self.root / 'storage'))}",
            f"runroot = {_toml_string(str(self.root / 'run'))}",
        ]
        self.storage_conf.write_text("\n".join(storage) + "\n")

    def add_insecure_registry(self, host: str) -> None:
        """Allow plain HTTP to ``host`` (``127.0.0.1:PORT``), e.g. a registry started later."""
        if host not in self._insecure:
            self._insecure.append(host)
            self.write_config()

    def env(self) -> dict[str, str]:
        """The variables that point podman (and skopeo, buildah) at this environment's config."""
        return {
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
        }

    # -- commands -------------------------------------------------------------------------------

    def command(self, args: Sequence[str]) -> list[str]:
        """The full argv that :meth:`run` executes for ``args``."""
        return [self.program, "--runtime", self.runtime, *args]

    def process_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment, for PATH) plus :meth:`env`."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env())
        return merged

    def run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``podman --runtime runc ARGS`` in this environment and capture its output.

        Raises :class:`~ecr_oci.devenv.CommandError` (with podman's stderr) on a non-zero exit
        when ``check``; :class:`~ecr_oci.devenv.MissingProgramError` when podman is missing.
        """
        return run_checked(self.command(args), env=self.process_env(), timeout=self.timeout, check=check)

    def pull(self, ref: str) -> str:
        """``podman pull REF``; returns the local image ID."""
        result = self.run(["pull", "--quiet", ref])
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""

    def run_image(self, ref: str, *args: str, options: Sequence[str] = ()) -> str:
        """``podman run --rm [OPTIONS] REF ARGS…`` and return its stdout.

        ``args`` replace the image's ``Cmd`` (the entrypoint stays), as with ``docker run``.
        """
        return self.run(["run", "--rm", *options, ref, *args]).stdout

    def image_ids(self) -> list[str]:
        """IDs of the images in this environment's storage."""
        return self.run(["images", "--quiet", "--no-trunc"]).stdout.split()

    def remove_all(self) -> None:
        """Remove every container and image of this environment (its storage stays usable)."""
        self.run(["rm", "--all", "--force"], check=False)
        self.run(["rmi", "--all", "--force"], check=False)
