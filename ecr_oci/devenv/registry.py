"""A real CNCF distribution registry (``docker-registry``) on a loopback port, for tests and demos.

    >>> from pathlib import Path
    >>> from ecr_oci.devenv import LocalRegistry
    >>> with LocalRegistry(Path("/tmp/reg")) as reg:          # doctest: +SKIP
    ...     offset = reg.log_offset()
    ...     ...                                               # push / pull against reg.host
    ...     served = reg.bytes_served(offset)                 # bytes the registry sent since then

The registry is the unmodified Debian ``docker-registry`` program (distribution 2.8), configured
by a YAML file we write: filesystem store, deletes enabled, ``127.0.0.1:PORT``, JSON log lines to a
file (the benchmark reads ``http.response.written`` from them), and optionally notification
endpoints and a token-auth block for the ECR service. The test fixtures and
``ecr-oci dev registry start`` both use this class, so there is one way to run a registry.

A registry started with ``detach=True`` outlives the Python process (``make run``); its PID and
port are recorded in ``registry.json`` under the root, and :meth:`LocalRegistry.attach` finds it
again to stop it, but only if that PID is still a ``docker-registry`` serving our config.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import yaml

from ecr_oci.devenv._process import (
    DevEnvError,
    FileBackedService,
    pid_alive,
    pid_cmdline,
    require_program,
    tail,
    terminate_pid,
    wait_for,
)

__all__ = ["LocalRegistry", "LoggedResponse", "free_port"]

#: File names inside a registry's root directory.
CONFIG_NAME = "config.yml"
LOG_NAME = "registry.log"
STATE_NAME = "registry.json"
STORAGE_NAME = "storage"

# distribution 2.8 logs one line per request; JSON formatter: ``"http.response.written":1234``,
# text formatter: ``http.response.written=1234``. The access log (Apache format) is switched off in
# the config we write, so each request is counted once.
_WRITTEN_TEXT = re.compile(r"(?:^|\s)http\.response\.written=(\d+)")
_TEXT_FIELD = re.compile(r'(?:^|\s)([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)')


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it; a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``.

    SO_REUSEADDR, as the registry itself sets it, so that connections of a just-killed registry
    lingering in TIME_WAIT do not count (``restart()`` right after ``kill()`` must work).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra`` recursively (mappings merge, anything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True, slots=True)
class LoggedResponse:
    """One request as the registry logged it when the response completed."""

    method: str
    uri: str
    status: int
    written: int

    @property
    def path(self) -> str:
        """The request URI without its query string."""
        return self.uri.partition("?")[0]


def _parse_log_line(line: str) -> LoggedResponse | None:
    """A :class:`LoggedResponse` from one registry log line, or None for lines that are not one."""
    line = line.strip()
    if "http.response.written" not in line:
        return None
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        fields: dict[str, Any] = record if isinstance(record, dict) else {}
    else:
        if _WRITTEN_TEXT.search(line) is None:
            return None
        fields = {}
        for key, raw in _TEXT_FIELD.findall(line):
            fields[key] = raw[1:-1] if raw.startswith('"') else raw
    try:
        return LoggedResponse(
            method=str(fields.get("http.request.method", "")),
            uri=str(fields.get("http.request.uri", "")),
            status=int(fields.get("http.response.status", 0)),
            written=int(fields["http.response.written"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class LocalRegistry(FileBackedService):
    """A ``docker-registry`` on ``127.0.0.1:PORT`` with its config, store and log in ``root``.

    Keyword arguments (all optional):

    - ``port``: the TCP port; a free one is picked when omitted.
    - ``notifications``: endpoint mappings for ``notifications.endpoints`` (``name``, ``url``,
      ``headers``, ``timeout``, ``threshold``, ``backoff`` …); ``include_references`` sets
      ``notifications.events.includereferences``.
    - ``auth_token``: the ``auth.token`` block (``realm``, ``service``, ``issuer``,
      ``rootcertbundle``), for the ECR service's token server.
    - ``log_formatter``: ``json`` (default) or ``text``; :meth:`bytes_served` reads both.
    - ``extra_config``: merged last into the YAML, for anything else a test needs.

    The process environment's ``REGISTRY_*`` variables are removed for the child, because
    distribution lets them override the config file and a test must get the registry it asked for.
    """

    CONFIG_NAME = CONFIG_NAME
    LOG_NAME = LOG_NAME
    STATE_NAME = STATE_NAME

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        notifications: Sequence[Mapping[str, Any]] = (),
        include_references: bool = True,
        auth_token: Mapping[str, Any] | None = None,
        log_formatter: Literal["json", "text"] = "json",
        extra_config: Mapping[str, Any] | None = None,
        program: str = "docker-registry",
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.port = port if port is not None else free_port()
        self.notifications = [dict(endpoint) for endpoint in notifications]
        self.include_references = include_references
        self.auth_token = dict(auth_token) if auth_token is not None else None
        self.log_formatter = log_formatter
        self.extra_config = dict(extra_config) if extra_config is not None else {}
        self.program = program
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    # -- where things are ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` — the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (plain HTTP: the dev registry has no TLS)."""
        return f"http://{self.host}"

    @property
    def storage_dir(self) -> Path:
        return self.root / STORAGE_NAME

    # -- config -------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The distribution configuration this registry runs with, as a mapping."""
        conf: dict[str, Any] = {
            "version": 0.1,
            "log": {
                "level": "info",
                "formatter": self.log_formatter,
                "accesslog": {"disabled": True},
            },
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": self.host,
                # A fixed secret per registry root keeps resumable uploads valid across restart().
                "secret": self._http_secret(),
            },
        }
        if self.notifications:
            conf["notifications"] = {
                "events": {"includereferences": self.include_references},
                "endpoints": self.notifications,
            }
        if self.auth_token is not None:
            conf["auth"] = {"token": self.auth_token}
        return _deep_merge(conf, self.extra_config)

    def _http_secret(self) -> str:
        secret_file = self.root / "http.secret"
        if secret_file.exists():
            return secret_file.read_text().strip()
        secret = secrets.token_hex(16)
        secret_file.write_text(secret + "\n")
        return secret

    def write_config(self) -> Path:
        """Write ``config.yml`` (and create the store) under ``root``; returns the config path."""
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return self.config_path

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, detach: bool = False) -> Self:
        """Start the registry and wait until ``GET /v2/`` answers.

        ``detach=True`` starts it in its own session through a short-lived shell, so it is not our
        child and keeps running after this Python process exits (``ecr-oci dev registry start``).

        Raises :class:`DevEnvError` when the port is taken, or the registry dies or does not answer
        within ``startup_timeout`` (the message carries the end of its log);
        :class:`~ecr_oci.devenv.MissingProgramError` when ``docker-registry`` is not installed.
        """
        if self.is_running():
            return self
        program = require_program(self.program)
        if _port_in_use("127.0.0.1", self.port):
            raise DevEnvError(f"cannot start a registry on {self.host}: the port is in use")
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        argv = [program, "serve", str(self.config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        if detach:
            # The shell starts the registry in the background and exits at once: the registry is
            # then nobody's child here (no zombie, no ResourceWarning) and has its own session.
            launcher = subprocess.run(
                [
                    "/bin/sh",
                    "-c",
                    'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!',
                    "sh",
                    str(self.log_path),
                    *argv,
                ],
                env=env,
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
        self._write_state()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Block until ``GET /v2/`` answers (any HTTP status: 401 is ready when auth is on)."""
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                if not self.is_running():
                    raise DevEnvError(
                        f"docker-registry on {self.host} exited during startup; "
                        f"log {self.log_path}:\n{tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    client.get(f"{self.url}/v2/")
                    return
                if time.monotonic() >= deadline:
                    raise DevEnvError(
                        f"docker-registry on {self.host} did not answer /v2/ within "
                        f"{self.startup_timeout} s; log {self.log_path}:\n{tail(self.log_path)}"
                    )
                time.sleep(0.05)

    def is_running(self) -> bool:
        """Whether the process we started (or attached to) is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and pid_alive(self._pid) and self._is_our_process(self._pid)

    def _is_our_process(self, pid: int) -> bool:
        """Whether ``pid`` is a docker-registry serving this root's config (guards PID reuse)."""
        argv = pid_cmdline(pid)
        return (
            len(argv) >= 3
            and Path(argv[0]).name == Path(self.program).name
            and argv[1] == "serve"
            and Path(argv[2]).absolute() == self.config_path
        )

    def stop(self) -> None:
        """SIGTERM the registry, SIGKILL after ``stop_timeout`` s; forget the recorded state."""
        self._signal_stop(kill=False)

    def kill(self) -> None:
        """SIGKILL the registry at once (fault tests: a registry that dies mid-push)."""
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

    def restart(self, *, detach: bool = False) -> Self:
        """Stop and start again on the same port with the same store (in-memory queues are lost)."""
        self.stop()
        return self.start(detach=detach)

    # -- state file (for a registry that outlives the command that started it) ----------------

    def _write_state(self) -> None:
        state = {
            "pid": self._pid,
            "host": self.host,
            "port": self.port,
            "config": str(self.config_path),
            "log": str(self.log_path),
            "storage": str(self.storage_dir),
            "program": self.program,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.state_path.write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, root: Path) -> LocalRegistry:
        """The registry recorded under ``root`` by an earlier :meth:`start`.

        Its :meth:`is_running` is true only if the recorded PID is still a ``docker-registry``
        serving this root's config, so :meth:`stop` never signals an unrelated process that got
        the PID later. Raises :class:`DevEnvError` when ``root`` holds no state file.
        """
        root = Path(root).absolute()
        state_path = root / STATE_NAME
        try:
            state = json.loads(state_path.read_text())
        except FileNotFoundError:
            raise DevEnvError(f"no registry state in {root} (was it started there?)") from None
        except ValueError as err:
            raise DevEnvError(f"unreadable registry state {state_path}: {err}") from err
        program = str(state.get("program") or "docker-registry")
        registry = cls(root, port=int(state["port"]), program=program)
        registry._pid = int(state["pid"])
        return registry

    # -- the log --------------------------------------------------------------------------------

    def log_offset(self) -> int:
        """The current size of the log; pass it to :meth:`bytes_served` to count from now on."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def responses(self, since_offset: int = 0) -> list[LoggedResponse]:
        """Every completed response logged after byte ``since_offset`` of the log."""
        return list(self._iter_responses(since_offset))

    def _iter_responses(self, since_offset: int) -> Iterator[LoggedResponse]:
        try:
            with self.log_path.open("rb") as log:
                log.seek(since_offset)
                for raw in log:
                    parsed = _parse_log_line(raw.decode(errors="replace"))
                    if parsed is not None:
                        yield parsed
        except FileNotFoundError:
            return

    def bytes_served(self, since_offset: int = 0, *, settle: float = 0.2) -> int:
        """Sum of ``http.response.written`` over responses logged after ``since_offset``.

        HEAD responses are left out: distribution 2.8 logs the length of the error body it would
        have written for a HEAD that fails (e.g. 94 for a 404 manifest), but nothing is sent.
        The registry writes a request's line just after the client got the last byte, so this waits
        until the log has not grown for ``settle`` seconds (at most 5 s) before reading it.
        """
        if settle > 0:
            deadline = time.monotonic() + 5.0
            size = self.log_offset()
            while time.monotonic() < deadline:
                time.sleep(settle)
                now = self.log_offset()
                if now == size:
                    break
                size = now
        return sum(
            response.written for response in self._iter_responses(since_offset) if response.method != "HEAD"
        )
