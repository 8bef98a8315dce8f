"""``ecr-oci login`` and ``logout``: check credentials with the registry's token server and keep
them where docker keeps them, so ``push``, ``pull`` and docker/podman/skopeo all find them.

    $ echo "$ROBOT_TOKEN" | ecr-oci login 127.0.0.1:5000 --username ci-bot --password-stdin --insecure
    Login succeeded: credentials for ci-bot stored in /root/.docker/config.json
    $ ecr-oci logout 127.0.0.1:5000

The check is what ``docker login`` does: ``GET /v2/``; on the ``Bearer`` challenge, ask the realm
for a token (no scope) with the credentials as basic auth (a token server answers wrong ones with
401); on a ``Basic`` challenge, send them to ``/v2/`` itself. Only credentials that pass are stored.

The file is ``--authfile``, else ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``
(what :func:`ecr_oci.cli.options.auth_file_candidates` reads last): ``auths[HOST].auth`` =
base64(``user:password``), every other entry and key of the file kept, written to a temporary file
with mode 0600 and renamed over the old one (a reader never sees half a file, and nobody else can
read the secret). The password is a user's password or an API token (``ecr_…``: robots and nodes
have only tokens); it is never printed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import authfile_option, docker_config_path, registry_options
from ecr_oci.errors import AuthError, Error
from ecr_oci.oci.auth import Credentials
from ecr_oci.oci.registry import RegistryClient

__all__ = ["forget_credentials", "login", "logout", "store_credentials"]


class CredentialsFileError(Error):
    """The docker config file cannot be read as a JSON object, or cannot be written."""

    exit_code = 2


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise CredentialsFileError(f"cannot read credentials file {path}: {err}") from None
    if not isinstance(document, dict):
        raise CredentialsFileError(f"credentials file {path} is not a JSON object")
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``document`` (mode 0600, even when the old file was wider)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor, temporary = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(descriptor, "w") as handle:  # mkstemp makes it 0600
                json.dump(document, handle, indent="\t")
                handle.write("\n")
            Path(temporary).replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise
    except OSError as err:
        raise CredentialsFileError(f"cannot write credentials file {path}: {err.strerror}") from None


def store_credentials(path: Path, host: str, credentials: Credentials) -> None:
    """Set ``auths[host].auth`` in the docker config ``path``, keeping everything else."""
    document = _read(path)
    auths = document.get("auths")
    if not isinstance(auths, dict):
        auths = document["auths"] = {}
    pair = f"{credentials.username}:{credentials.password}".encode()
    old = auths.get(host)
    entry: dict[str, Any] = old if isinstance(old, dict) else {}
    # a stale identitytoken or username/password pair would win over "auth" in some clients
    entry = {k: v for k, v in entry.items() if k not in ("username", "password", "identitytoken")}
    entry["auth"] = base64.b64encode(pair).decode()
    auths[host] = entry
    _write(path, document)


def forget_credentials(path: Path, host: str) -> bool:
    """Remove ``auths[host]`` from ``path``; whether there was one."""
    document = _read(path)
    auths = document.get("auths")
    if not isinstance(auths, dict) or host not in auths:
        return False
    del auths[host]
    _write(path, document)
    return True


def check_credentials(host: str, credentials: Credentials, *, insecure: bool) -> None:
    """Raise :class:`~ecr_oci.errors.AuthError` unless ``host`` accepts ``credentials``.

    ``GET /v2/`` through the client's bearer flow: the token request carries the credentials, and
    the token server refuses wrong ones with 401 (a registry without auth accepts anything).
    """
    with RegistryClient(host, insecure=insecure, credentials=credentials, retries=0, timeout=30.0) as client:
        try:
            client.ping()
        except AuthError as err:
            raise AuthError(
                f"login to {host} failed: wrong name, password or token", url=err.url, status=err.status
            ) from None


def _normalize_host(registry: str) -> str:
    return registry.removeprefix("https://").removeprefix("http://").split("/", 1)[0]


@cli.command()
@click.argument("registry")
@click.option("-u", "--username", help="User, robot or node name (prompted when missing).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password or API token from stdin (one line) instead of a prompt.",
)
@registry_options
def login(
    registry: str, username: str | None, password_stdin: bool, insecure: bool, authfile: Path | None
) -> None:
    """Check credentials for REGISTRY (host[:port]) with its token server and store them.

    \b
    Example:
      echo "$TOKEN" | ecr-oci login 127.0.0.1:5000 -u ci-bot --password-stdin --insecure

    The password is a user's password or an API token (robots and nodes). Credentials go to
    --authfile, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json (mode 0600), where
    push, pull, docker, podman and skopeo find them.
    """
    host = _normalize_host(registry)
    if not username:
        username = click.prompt("Username", err=True)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, err=True)
    if not username or not password:
        raise click.UsageError("a username and a password (or token) are required")
    credentials = Credentials(username, password)
    check_credentials(host, credentials, insecure=insecure)
    path = authfile or docker_config_path()
    store_credentials(path, host, credentials)
    click.echo(f"Login succeeded: credentials for {username} stored in {path}")


@cli.command()
@click.argument("registry")
@authfile_option("Credentials file (docker config.json format). Default: docker's.")
def logout(registry: str, authfile: Path | None) -> None:
    """Remove the stored credentials for REGISTRY."""
    host = _normalize_host(registry)
    path = authfile or docker_config_path()
    if forget_credentials(path, host):
        click.echo(f"Removed the credentials for {host} from {path}")
    else:
        click.echo(f"No credentials for {host} in {path}")
