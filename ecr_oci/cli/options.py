"""Options shared by every command that talks to a registry, and the one place the CLI reads the
environment for them (STYLE §8: the library never does).

Credentials are looked up like docker and podman do: ``--authfile``, then ``$REGISTRY_AUTH_FILE``,
``$XDG_RUNTIME_DIR/containers/auth.json``, ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ecr_oci.errors import KeyFileError
from ecr_oci.oci.auth import Credentials, load_docker_config
from ecr_oci.oci.registry import RegistryClient

F = TypeVar("F", bound=Callable[..., Any])


_AUTHFILE_HELP = "Credentials file (docker config.json format). Default: podman's, then docker's."


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json`` (docker's own rule)."""
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def auth_file_candidates() -> list[Path]:
    found = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        found.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        found.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    found.append(docker_config_path())
    return found


@dataclass(frozen=True)
class RegistryOptions:
    insecure: bool
    authfile: Path | None

    def credentials(self) -> dict[str, Credentials]:
        merged: dict[str, Credentials] = {}
        files = [self.authfile] if self.authfile else list(reversed(auth_file_candidates()))
        for path in files:
            merged.update(load_docker_config(path))
        return merged

    def connector(self) -> Connector:
        return Connector(insecure=self.insecure, credentials=self.credentials())


class Connector:
    """``connect(host)`` for the library: one client per host, credentials from the auth files.

    A context manager so every HTTP connection is closed when the command ends.
    """

    def __init__(self, *, insecure: bool, credentials: dict[str, Credentials]) -> None:
        self._insecure = insecure
        self._credentials = credentials
        self._clients: dict[str, RegistryClient] = {}

    def __call__(self, host: str) -> RegistryClient:
        if host not in self._clients:
            self._clients[host] = RegistryClient(
                host, insecure=self._insecure, credentials=self._credentials.get(host)
            )
        return self._clients[host]

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients.values():
            client.close()


def authfile_option(help_text: str = _AUTHFILE_HELP) -> Callable[[F], F]:
    """``--authfile PATH`` (passed as ``authfile: Path | None``); ``help_text`` says what it is for."""
    return click.option("--authfile", type=click.Path(dir_okay=False, path_type=Path), help=help_text)


def registry_options(command: F) -> F:
    """Adds ``--insecure`` and ``--authfile`` and passes ``registry_options: RegistryOptions``."""
    command = authfile_option()(command)
    command = click.option(
        "--insecure",
        is_flag=True,
        help="Talk plain HTTP to the registry (local test registries such as 127.0.0.1:5000).",
    )(command)
    return command


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org) or 0: the mtime and created time of images."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"SOURCE_DATE_EPOCH={value!r} is not an integer") from None


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecr-oci" / "layers.db"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def echo_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """``header`` and ``rows`` as left-aligned columns two spaces apart (trailing spaces stripped)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def human_size(n: int | None) -> str:
    """``1.3 MiB``-style sizes for tables; ``-`` when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def parse_pairs(pairs: tuple[str, ...], *, option: str, metavar: str) -> dict[str, str]:
    """The ``KEY=VALUE`` values of a repeatable ``option`` as a dict (a later key wins); one without
    ``=`` or with an empty key raises :class:`click.BadParameter` naming ``option`` and ``metavar``."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not {metavar}", param_hint=option)
        found[key] = value
    return found


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (a secret is never readable by others) and write
    ``data``; an existing file is never overwritten (:class:`FileExistsError`)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def read_key_file(path: Path) -> bytes:
    """A key file's bytes; an unreadable file is a :class:`KeyFileError` naming it."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read the key file ({err.strerror})") from None
