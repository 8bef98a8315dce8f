"""``ecr-oci node keygen|credential``: a Waggle node's own key, and the login assertion made with it
(``ecr_oci.node_identity``).

    $ ecr-oci node keygen --out /etc/waggle/node.key          # prints the public key (PEM)
    $ ecr-oci admin node create node-w07b --public-key node.pub # on the admin's machine
    $ ecr-oci node credential --key /etc/waggle/node.key --name node-w07b --registry ecr.example:5000

``credential`` writes a fresh assertion (valid ``--ttl``, default 1 h) as the node's password into
the docker/podman auth file, where podman, containerd (via its CRI config) and ``ecr-oci pull``
find it; run it from a timer more often than the TTL. The audience (the registry's token
service) is read from the registry's ``/v2/`` challenge unless ``--audience`` names it.
"""

from __future__ import annotations

from pathlib import Path

import click
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ecr_oci.cli.login import store_credentials
from ecr_oci.cli.main import cli
from ecr_oci.cli.options import authfile_option, docker_config_path, write_private_file
from ecr_oci.errors import Error, KeyFileError
from ecr_oci.node_identity import MAX_TTL_S, NodeKey, make_assertion, public_key_pem
from ecr_oci.oci.auth import Credentials

__all__ = ["node"]


class AudienceError(Error):
    """The registry's token service could not be read from its ``/v2/`` challenge."""

    exit_code = 1


@cli.group()
def node() -> None:
    """A node's own key and its login credential (key-based node identity)."""


@node.command("keygen")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (PEM, mode 0600); refuses to overwrite.",
)
def keygen(out: Path) -> None:
    """Make an EC P-256 key for this node; prints its public key for `ecr-oci admin node create`."""
    if out.exists():
        raise KeyFileError(f"{out} exists: refusing to overwrite a node key")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(out, pem)
    click.echo(public_key_pem(key), nl=False)


def _load_key(path: Path) -> NodeKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as err:
        raise KeyFileError(f"cannot read node key {path}: {err.strerror}") from None
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from None
    if isinstance(key, ed25519.Ed25519PrivateKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise KeyFileError(f"{path}: a node key must be EC P-256 or Ed25519")


def _audience(registry: str, insecure: bool) -> str:
    url = f"{'http' if insecure else 'https'}://{registry}/v2/"
    try:
        challenge = httpx.get(url, timeout=15.0).headers.get("WWW-Authenticate", "")
    except httpx.HTTPError as err:
        raise AudienceError(f"cannot reach {url} ({type(err).__name__}); pass --audience") from None
    for part in challenge.split(","):
        key, _, value = part.strip().partition("=")
        if key.endswith("service"):
            return str(value.strip('"'))
    raise AudienceError(f"{registry} sent no token challenge with a service; pass --audience")


@node.command("credential")
@click.option(
    "--key",
    "key_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The node's private key (from `ecr-oci node keygen`).",
)
@click.option("--name", required=True, help="The node's name in the ECR.")
@click.option("--registry", required=True, help="Registry host[:port] the credential is for.")
@click.option("--insecure", is_flag=True, help="Plain HTTP to the registry (to read its challenge).")
@click.option("--audience", help="The registry's token service (default: read from its /v2/ challenge).")
@click.option(
    "--ttl",
    type=click.IntRange(60, MAX_TTL_S),
    default=3600,
    show_default=True,
    help="Seconds the credential stays valid.",
)
@authfile_option("Auth file to write (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).")
@click.option("--print", "print_only", is_flag=True, help="Print the assertion instead of storing it.")
def credential(
    key_path: Path,
    name: str,
    registry: str,
    insecure: bool,
    audience: str | None,
    ttl: int,
    authfile: Path | None,
    print_only: bool,
) -> None:
    """Write a fresh signed login for this node into the auth file (run it from a timer)."""
    key = _load_key(key_path)
    assertion = make_assertion(key, name, audience=audience or _audience(registry, insecure), ttl=ttl)
    if print_only:
        click.echo(assertion)
        return
    path = authfile or docker_config_path()
    store_credentials(path, registry, Credentials(name, assertion))
    click.echo(f"credential for node {name} stored in {path} (valid {ttl} s)")
