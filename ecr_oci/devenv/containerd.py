"""A private containerd (what k3s on Waggle nodes runs), its state in one folder, driven by ``ctr``.

    >>> from pathlib import Path
    >>> from ecr_oci.devenv import LocalContainerd
    >>> with LocalContainerd(Path("/tmp/ctd")) as node:                             # doctest: +SKIP
    ...     node.pull("127.0.0.1:5000/base/busybox:1.36")
    ...     node.run("127.0.0.1:5000/base/busybox:1.36", "t1", "/bin/echo", "hello")
    'hello\\n'

containerd is stricter than podman about media types (it trusts the layer media type instead of
sniffing the compression), so it is the client that proves a pushed image is standard. The daemon is
Debian's containerd 1.6 started without systemd: a ``version = 2`` config with ``root``, ``state``
and the gRPC socket under ``root``, the CRI plugin disabled (no kubelet here), and the ``native``
snapshotter (plain copies: no overlay mounts to leak when a test dies). ``ctr run`` works on these
machines as root; where it does not, :class:`ContainerRunError` carries containerd's own reason.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from ecr_oci.devenv._process import (
    CommandError,
    DevEnvError,
    Service,
    require_program,
    run_checked,
    tail,
    terminate_pid,
    wait_ready,
)

__all__ = ["ContainerRunError", "LocalContainerd"]

#: Longest path a Unix socket address may have (``sun_path`` is 108 bytes with the final NUL).
_MAX_SOCKET_PATH = 107


class ContainerRunError(CommandError):
    """``ctr run`` failed: the message carries containerd's reason (and the daemon log's tail)."""

    def __init__(self, base: CommandError, daemon_log: str) -> None:
        super().__init__(base.argv, base.returncode, base.stdout, base.stderr)
        self.daemon_log = daemon_log
        self.args = (f"{self.args[0]}\n--- containerd log (tail) ---\n{daemon_log}",)


class LocalContainerd(Service):
    """A ``containerd`` process whose root, state, config, log and socket are all under ``root``.

    ``snapshotter`` defaults to ``native`` (works without overlay support); ``namespace`` is the
    containerd namespace ``ctr`` uses.
    """

    def __init__(
        self,
        root: Path,
        *,
        snapshotter: str = "native",
        namespace: str = "default",
        program: str = "containerd",
        ctr_program: str = "ctr",
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        timeout: float = 300.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.snapshotter = snapshotter
        self.namespace = namespace
        self.program = program
        self.ctr_program = ctr_program
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "containerd.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def write_config(self) -> Path:
        """Write ``config.toml`` (everything containerd stores goes under ``root``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [
            "version = 2",
            f'root = "{self.root / "root"}"',
            f'state = "{self.root / "state"}"',
            "",
            "[grpc]",
            f'  address = "{self.socket}"',
            "",
            "[plugins]",
            '  [plugins."io.containerd.grpc.v1.cri"]',
            "    disable = true",
            # Default /opt/containerd would be created on the host otherwise.
            '  [plugins."io.containerd.internal.v1.opt"]',
            f'    path = "{self.root / "opt"}"',
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start containerd and wait until ``ctr version`` answers on the socket.

        Raises :class:`DevEnvError` when it dies or does not answer within ``startup_timeout``
        (with the log's tail), or when ``root`` is too deep for a Unix socket path.
        """
        if self.is_running():
            return self
        if len(str(self.socket)) > _MAX_SOCKET_PATH:
            raise DevEnvError(f"socket path {self.socket} is longer than a Unix socket allows")
        program = require_program(self.program)
        require_program(self.ctr_program)
        self.write_config()
        self.socket.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [program, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        wait_ready(
            lambda: self.socket.exists() and self.ctr(["version"], check=False).returncode == 0,
            alive=self.is_running,
            what=f"containerd on {self.socket}",
            timeout=self.startup_timeout,
            log_path=self.log_path,
            interval=0.1,
        )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Kill leftover tasks (their shims would outlive containerd), then SIGTERM containerd."""
        if self._proc is None:
            return
        if self.is_running():
            with contextlib.suppress(DevEnvError):
                self._remove_tasks()
            terminate_pid(self._proc.pid, timeout=self.stop_timeout, proc=self._proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=self.stop_timeout)
        self._proc = None

    def _remove_tasks(self) -> None:
        for task in self.ctr(["tasks", "list", "--quiet"], check=False).stdout.split():
            self.ctr(["tasks", "kill", "--signal", "SIGKILL", task], check=False)
            self.ctr(["tasks", "delete", "--force", task], check=False)
        for container in self.ctr(["containers", "list", "--quiet"], check=False).stdout.split():
            self.ctr(["containers", "delete", container], check=False)

    # -- ctr --------------------------------------------------------------------------------------

    def ctr(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr -a SOCKET -n NAMESPACE ARGS``, output captured; :class:`CommandError` if not 0."""
        return run_checked(
            [self.ctr_program, "-a", str(self.socket), "-n", self.namespace, *args],
            timeout=self.timeout,
            check=check,
        )

    def pull(
        self,
        ref: str,
        *,
        plain_http: bool = True,
        platform: str | None = None,
        user: str | None = None,
    ) -> None:
        """``ctr images pull`` (and unpack for this snapshotter) of ``ref``.

        ``plain_http`` for the local HTTP registries; ``platform`` (``linux/arm64``) to pick one
        entry of an index instead of the host's; ``user`` is ``NAME[:PASSWORD]`` for token auth.
        """
        args = ["images", "pull", "--snapshotter", self.snapshotter]
        if plain_http:
            args.append("--plain-http")
        if platform is not None:
            args += ["--platform", platform]
        if user is not None:
            args += ["--user", user]
        self.ctr([*args, ref])

    def images(self) -> list[str]:
        """Names of the images containerd holds."""
        return self.ctr(["images", "list", "--quiet"]).stdout.split()

    def run(self, ref: str, container_id: str, *args: str) -> str:
        """``ctr run --rm --snapshotter S REF ID ARGS…`` and return its stdout.

        Unlike ``podman run``, ``ctr`` replaces the image's entrypoint *and* cmd with ``args`` when
        any are given (``/bin/echo hello``, not ``-c 'echo hello'``). Raises
        :class:`ContainerRunError` with containerd's reason when the container cannot run.
        """
        argv = ["run", "--rm", "--snapshotter", self.snapshotter, ref, container_id, *args]
        try:
            return self.ctr(argv).stdout
        except CommandError as err:
            raise ContainerRunError(err, tail(self.log_path, 30)) from err
