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

import copy
import json
import os
import re
import secrets
import socket
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
    pid_cmdline,
    require_program,
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


#: Go runtime settings the registry starts with unless the environment sets them. distribution
#: 2.8 reads every blob through a fresh 4 MiB ``bufio.Reader`` (registry/storage/filereader.go,
#: ``fileReaderBufferSize``), so serving a 1 KiB image config costs ~2.1 ms of CPU with Go's
#: defaults, mostly collecting and re-faulting those buffers. The collector runs only when the
#: heap reaches a memory limit (``GOGC=off`` + ``GOMEMLIMIT``, the Go GC guide's mode for a
#: process whose garbage is large and its live heap small), and freed pages are kept with
#: ``MADV_FREE``: ~0.8 ms per blob read, 0.9 → 0.5 ms per manifest read, for ~190 MiB resident
#: when busy. Past the limit Go collects as needed, so a live heap that grows beyond it (tens of
#: concurrent blob reads) costs collections, not a failure (docs/service.md).
GO_RUNTIME_DEFAULTS = {"GOGC": "off", "GOMEMLIMIT": "192MiB", "GODEBUG": "madvdontneed=0"}


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
    KIND = "registry"

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
                # as in the config Debian ships (/etc/docker/registry/config.yml): remembers
                # blob descriptors, so a blob GET skips its stat and link reads (~0.1 ms of CPU
                # of ~0.75; docs/service.md); deletes through the API clear it
                "cache": {"blobdescriptor": "inmemory"},
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

        ``detach=True`` lets it keep running after this Python process exits
        (``ecr-oci dev registry start``).

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
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env = {**GO_RUNTIME_DEFAULTS, **inherited}
        self._launch([program, "serve", str(self.config_path)], env=env, detach=detach)
        return self

    def _answers(self, client: httpx.Client) -> bool:
        # Any HTTP status counts: 401 is ready when auth is on.
        client.get(f"{self.url}/v2/")
        return True

    def _describe(self) -> str:
        return f"docker-registry on {self.host}"

    def _is_our_process(self, pid: int) -> bool:
        """Whether ``pid`` is a docker-registry serving this root's config (guards PID reuse)."""
        argv = pid_cmdline(pid)
        return (
            len(argv) >= 3
            and Path(argv[0]).name == Path(self.program).name
            and argv[1] == "serve"
            and Path(argv[2]).absolute() == self.config_path
        )

    def restart(self, *, detach: bool = False) -> Self:
        """Stop and start again on the same port with the same store (in-memory queues are lost)."""
        self.stop()
        return self.start(detach=detach)

    # -- state file (for a registry that outlives the command that started it) ----------------

    def _state(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "config": str(self.config_path),
            "log": str(self.log_path),
            "storage": str(self.storage_dir),
            "program": self.program,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    @classmethod
    def attach(cls, root: Path) -> LocalRegistry:
        """The registry recorded under ``root`` by an earlier :meth:`start`.

        Its :meth:`is_running` is true only if the recorded PID is still a ``docker-registry``
        serving this root's config, so :meth:`stop` never signals an unrelated process that got
        the PID later. Raises :class:`DevEnvError` when ``root`` holds no state file.
        """
        state = cls.read_state(root)
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

    def responses(self, since_offset: int = 0, *, settle: float = 0.0) -> list[LoggedResponse]:
        """Every completed response logged after byte ``since_offset`` of the log; with ``settle``,
        once the log has not grown for that many seconds (see :meth:`bytes_served`)."""
        self._wait_settled(settle)
        return list(self._iter_responses(since_offset))

    def _wait_settled(self, settle: float) -> None:
        """Until the log has not grown for ``settle`` seconds (at most 5 s): the registry writes a
        request's line just after the client got the last byte."""
        if settle <= 0:
            return
        deadline = time.monotonic() + 5.0
        size = self.log_offset()
        while time.monotonic() < deadline:
            time.sleep(settle)
            now = self.log_offset()
            if now == size:
                return
            size = now

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
        return sum(r.written for r in self.responses(since_offset, settle=settle) if r.method != "HEAD")
