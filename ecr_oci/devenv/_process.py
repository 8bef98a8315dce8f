"""Process plumbing for the dev environment helpers: find programs, run them, stop them by PID.

    >>> from ecr_oci.devenv._process import pid_alive
    >>> import os
    >>> pid_alive(os.getpid())
    True

Everything here works on a PID the caller recorded, never on a process name: the dev helpers must
only ever stop what they started (another engineer's registry on the same machine is not ours).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from ecr_oci.errors import Error

__all__ = [
    "CommandError",
    "DevEnvError",
    "MissingProgramError",
    "Service",
    "pid_alive",
    "pid_cmdline",
    "require_program",
    "run_checked",
    "tail",
    "terminate_pid",
    "wait_for",
]

#: Debian package that provides each program the dev environment runs (for the "install it" hint).
PACKAGES: dict[str, str] = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "podman": "podman",
    "runc": "runc",
    "umoci": "umoci",
    "containerd": "containerd",
    "ctr": "containerd",
    "busybox": "busybox-static",
    "zstd": "zstd",
}


class DevEnvError(Error):
    """A local dev/test service (registry, podman, containerd, base image build) failed."""


class MissingProgramError(DevEnvError):
    """A program the dev environment needs is not installed; the message says how to get it."""

    def __init__(self, program: str) -> None:
        self.program = program
        package = PACKAGES.get(program)
        hint = f" (Debian package {package!r})" if package else ""
        super().__init__(
            f"{program} not found on PATH{hint}; run `make install` (as root it apt-get installs "
            "the system packages the dev environment needs)"
        )


class CommandError(DevEnvError):
    """A program exited non-zero; carries the argv, the exit status and the tail of its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr.strip() or stdout.strip())[-2000:]
        super().__init__(f"`{' '.join(self.argv)}` exited with status {returncode}: {detail}")


def require_program(program: str) -> str:
    """Return the absolute path of ``program`` on PATH, or raise :class:`MissingProgramError`."""
    found = shutil.which(program)
    if found is None:
        raise MissingProgramError(program)
    return found


def run_checked(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 300.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion with captured text output.

    Raises :class:`CommandError` on a non-zero exit when ``check`` (the default), so that a failing
    ``skopeo`` or ``umoci`` call surfaces its own stderr instead of a bare ``CalledProcessError``;
    :class:`MissingProgramError` when ``argv[0]`` is not installed; :class:`DevEnvError` on timeout.
    """
    program = require_program(argv[0])
    try:
        result = subprocess.run(
            [program, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise DevEnvError(f"`{' '.join(argv)}` did not finish within {timeout} s") from err
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout, result.stderr)
    return result


def _proc_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/PID/stat`` (``R``, ``S``, ``Z`` …), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; the state follows it.
    return stat.rpartition(")")[2].split()[0]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead: it will never answer again)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in (None, "Z", "X")


def pid_cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` from ``/proc``, or ``[]`` when it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate_pid(pid: int, *, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Stop ``pid``: SIGTERM, then SIGKILL once ``timeout`` seconds pass.

    When the caller holds the :class:`subprocess.Popen` (the process is our child), it is waited on
    so no zombie or ``ResourceWarning`` is left behind; otherwise ``/proc`` is polled.
    """

    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        return not pid_alive(pid)

    if gone():
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_for(gone, timeout=timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_for(gone, timeout=timeout)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (empty when it does not exist), for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Service:
    """A program the dev environment starts and stops; ``with`` starts it and always stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class FileBackedService(Service):
    """A service whose config, log and state live in files under ``root`` (named by the subclass).

    ``state`` records the PID so a later command (``make stop``) can stop what an earlier one started.
    """

    CONFIG_NAME: ClassVar[str]
    LOG_NAME: ClassVar[str]
    STATE_NAME: ClassVar[str]

    root: Path
    _pid: int | None

    @property
    def config_path(self) -> Path:
        return self.root / self.CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.root / self.LOG_NAME

    @property
    def state_path(self) -> Path:
        return self.root / self.STATE_NAME

    @property
    def pid(self) -> int | None:
        """PID of the process (also for one found again from its state file)."""
        return self._pid
