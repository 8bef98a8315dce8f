"""Process plumbing for the dev environment helpers: find programs, run them, stop them by PID.

    >>> from ecr_oci.devenv._process import pid_alive
    >>> import os
    >>> pid_alive(os.getpid())
    True

Everything here works on a PID the caller recorded, never on a process name: the dev helpers must
only ever stop what they started (another engineer's registry on the same machine is not ours).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx

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
    "wait_ready",
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


def wait_ready(
    ready: Callable[[], bool],
    *,
    alive: Callable[[], bool],
    what: str,
    timeout: float,
    log_path: Path,
    interval: float = 0.05,
) -> None:
    """Poll ``ready`` until it is true, while ``alive`` stays true.

    Raises :class:`DevEnvError` with the end of ``log_path`` when the process exits first or
    ``timeout`` seconds pass; ``what`` names the process and where it should answer.
    """

    def ready_while_alive() -> bool:
        if not alive():
            raise DevEnvError(f"{what} exited during startup; log {log_path}:\n{tail(log_path)}")
        return ready()

    if not wait_for(ready_while_alive, timeout=timeout, interval=interval):
        raise DevEnvError(f"{what} did not answer within {timeout} s; log {log_path}:\n{tail(log_path)}")


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
    """A server process whose config, log and state live in files under ``root``.

    The subclass names the files, writes the config, gives the argv and says how to tell the
    process answers (:meth:`_answers`) and that a PID is still ours (:meth:`_is_our_process`).
    ``state`` records the PID so a later command (``make stop``) can stop what an earlier one
    started, and :meth:`attach` finds it again from there.
    """

    CONFIG_NAME: ClassVar[str]
    LOG_NAME: ClassVar[str]
    STATE_NAME: ClassVar[str]
    #: What the process is, for error messages ("registry", "service").
    KIND: ClassVar[str]

    root: Path
    startup_timeout: float
    stop_timeout: float = 10.0
    _proc: subprocess.Popen[bytes] | None = None
    _pid: int | None = None

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

    # -- what a subclass says -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, where the process answers."""
        raise NotImplementedError

    def _answers(self, client: httpx.Client) -> bool:
        """Whether the process serves requests yet (raise ``httpx.TransportError`` when not)."""
        raise NotImplementedError

    def _is_our_process(self, pid: int) -> bool:
        """Whether ``pid`` still runs this root's config (guards against PID reuse)."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        """What the state file records besides the PID."""
        raise NotImplementedError

    def _describe(self) -> str:
        """The process in an error message."""
        return f"the {self.KIND} on {self.url}"

    # -- lifecycle ------------------------------------------------------------------------------

    def _launch(self, argv: Sequence[str], *, env: Mapping[str, str], detach: bool) -> None:
        """Start ``argv`` with its output appended to the log, record it, wait until it answers.

        ``detach=True`` starts it in its own session through a short-lived shell, so it is not our
        child and keeps running after this Python process exits (no zombie, no ResourceWarning).
        On any failure to become ready the process is stopped again.
        """
        if detach:
            launcher = subprocess.run(
                [
                    "/bin/sh",
                    "-c",
                    'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!',
                    "sh",
                    str(self.log_path),
                    *argv,
                ],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                start_new_session=True,
                check=True,
            )
            self._proc = None
            self._pid = int(launcher.stdout.strip())
        else:
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            self._pid = self._proc.pid
        self.state_path.write_text(json.dumps({"pid": self._pid, **self._state()}, indent=2) + "\n")
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Block until the process answers; raises :class:`DevEnvError` if it dies or times out."""
        with httpx.Client(trust_env=False, timeout=2.0) as client:

            def ready() -> bool:
                try:
                    return self._answers(client)
                except httpx.TransportError:
                    return False

            wait_ready(
                ready,
                alive=self.is_running,
                what=self._describe(),
                timeout=self.startup_timeout,
                log_path=self.log_path,
            )

    def is_running(self) -> bool:
        """Whether the process we started (or attached to) is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and pid_alive(self._pid) and self._is_our_process(self._pid)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout`` s; forget the recorded state."""
        self._signal_stop(kill=False)

    def kill(self) -> None:
        """SIGKILL at once (fault tests: a process that dies mid-request)."""
        self._signal_stop(kill=True)

    def _signal_stop(self, *, kill: bool) -> None:
        if self._pid is not None and self.is_running():
            if kill:
                pid = self._pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if self._proc is None:
                    wait_for(lambda: not pid_alive(pid), timeout=self.stop_timeout)
            else:
                terminate_pid(self._pid, timeout=self.stop_timeout, proc=self._proc)
        if self._proc is not None:
            # Reap our child (it may already be dead) so no zombie or ResourceWarning remains.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=self.stop_timeout)
        self._proc = None
        self._pid = None
        self.state_path.unlink(missing_ok=True)

    # -- state file (for a process that outlives the command that started it) -------------------

    @classmethod
    def read_state(cls, root: Path) -> dict[str, Any]:
        """The state file under ``root``; raises :class:`DevEnvError` when missing or unreadable."""
        state_path = Path(root).absolute() / cls.STATE_NAME
        try:
            state = json.loads(state_path.read_text())
        except FileNotFoundError:
            raise DevEnvError(f"no {cls.KIND} state in {state_path.parent} (was it started there?)") from None
        except ValueError as err:
            raise DevEnvError(f"unreadable {cls.KIND} state {state_path}: {err}") from err
        return dict(state)
