"""``ecr-oci keygen``, ``sign`` and ``verify``: cosign-compatible keys and image signatures.

    $ COSIGN_PASSWORD=secret ecr-oci keygen
    $ ecr-oci sign 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.key --insecure
    $ ecr-oci verify 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.pub --insecure --json

The one place the key password is read (``COSIGN_PASSWORD``, as cosign, else a hidden prompt); the
library takes it as bytes. ``push --sign-key`` reuses :func:`load_signing_key`. Exit codes: 0 ok,
1 registry failure, 2 bad input (key file, reference), 4 verification failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import (
    RegistryOptions,
    echo_json,
    parse_pairs,
    read_key_file,
    registry_options,
    write_private_file,
)
from ecr_oci.errors import KeyFileError, VerificationError
from ecr_oci.reference import Reference
from ecr_oci.signing.keys import generate_key_pair, load_private_key, load_public_key
from ecr_oci.signing.sign import sign_image
from ecr_oci.signing.verify import verify_image

PASSWORD_VARIABLE = "COSIGN_PASSWORD"  # noqa: S105 (the name of a variable, not a password)
_KEY_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def key_password(*, confirm: bool) -> bytes:
    """``$COSIGN_PASSWORD`` (set but empty means an empty password), else a hidden prompt."""
    value = os.environ.get(PASSWORD_VARIABLE)
    if value is None:
        value = click.prompt(
            "Enter password for private key",
            hide_input=True,
            confirmation_prompt=confirm,
            default="",
            show_default=False,
            err=True,
        )
    return value.encode()


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read and decrypt a private key file, asking for its password; raises ``KeyFileError``."""
    return load_private_key(read_key_file(path), key_password(confirm=False), source=str(path))


def load_verification_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a ``cosign.pub``-style public key file; raises ``KeyFileError``."""
    return load_public_key(read_key_file(path), source=str(path))


@contextmanager
def verification_failure_as_json(pinned: Reference, *, enabled: bool, **extra: object) -> Iterator[None]:
    """With ``--json``, a :class:`VerificationError` becomes ``{"verified": false, "reason": …}`` on
    stdout and its exit status (4); without, it propagates to the one-line error handler.

    ``pinned`` is the reference with the digest it resolved to; ``extra`` adds fields (the
    attestation commands add ``predicateType``).
    """
    try:
        yield
    except VerificationError as err:
        if not enabled:
            raise
        document = {"verified": False, "reference": str(pinned), "digest": str(pinned.digest)}
        echo_json({**document, **extra, "reason": err.reason, "message": str(err)})
        sys.exit(err.exit_code)


@cli.command()
@click.option(
    "--output-key-prefix",
    default="cosign",
    show_default=True,
    help="Write PREFIX.key (private, encrypted) and PREFIX.pub.",
)
def keygen(output_key_prefix: str) -> None:
    """Make an ECDSA P-256 key pair in cosign's file formats.

    \b
    The private key is encrypted with the password from $COSIGN_PASSWORD or a prompt. Keys made
    here work with cosign, and keys from `cosign generate-key-pair` work here. Existing files are
    never overwritten.

    \b
    Example:
      COSIGN_PASSWORD=secret ecr-oci keygen --output-key-prefix ecr
    """
    private_path, public_path = Path(f"{output_key_prefix}.key"), Path(f"{output_key_prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists: remove it or choose another --output-key-prefix")
    pair = generate_key_pair(key_password(confirm=True))
    write_private_file(private_path, pair.private_pem)
    public_path.write_bytes(pair.public_pem)
    click.echo(f"Private key written to {private_path}")
    click.echo(f"Public key written to {public_path}")


@cli.command()
@click.argument("reference")
@click.option("--key", "key_path", required=True, type=_KEY_FILE, help="Private key (cosign.key).")
@click.option(
    "--bundle-format",
    is_flag=True,
    help="Also attach a sigstore bundle v0.3 referrer (for cosign v3, Kyverno).",
)
@click.option(
    "-a",
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Add to the signed payload's 'optional' (as cosign sign -a); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@registry_options
def sign(
    reference: str,
    key_path: Path,
    bundle_format: bool,
    annotations: tuple[str, ...],
    as_json: bool,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Sign REFERENCE (and, for an index, every platform manifest) as cosign does.

    \b
    Signatures go to the sha256-<hex>.sig tag next to the image, readable by cosign,
    policy-controller, Kyverno and containers/image. Signing again with the same key adds nothing.

    \b
    Example:
      ecr-oci sign 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.key --insecure
    """
    ref = Reference.parse(reference)
    optional = parse_pairs(annotations, option="--annotation", metavar="KEY=VALUE")
    key = load_signing_key(key_path)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        signed = sign_image(
            connect(ref.registry), ref, key, bundle_format=bundle_format, annotations=optional
        )
    if as_json:
        echo_json({"signed": [item.to_json_obj() for item in signed]})
        return
    for item in signed:
        state = "signed" if item.added else "already signed"
        bundle = f", bundle {item.bundle}" if item.bundle else ""
        click.echo(f"{state} {item.reference} ({item.signature_tag}{bundle})")


@cli.command()
@click.argument("reference")
@click.option("--key", "key_path", required=True, type=_KEY_FILE, help="Public key (cosign.pub).")
@click.option(
    "--identity",
    metavar="HOST/REPO",
    help="Also require the signature to name this repository (docker-reference).",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"verified": true/false, "digest": …, "reason": …}.'
)
@registry_options
def verify(
    reference: str,
    key_path: Path,
    identity: str | None,
    as_json: bool,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Exit 0 only if a valid signature by --key covers the digest REFERENCE resolves to.

    \b
    Otherwise says why and exits 4: no-signature, wrong-key (another key signed it or the payload
    was changed), digest-mismatch (signature for another image), identity-mismatch (--identity),
    malformed (broken signature manifest or annotation).

    \b
    Example:
      ecr-oci verify 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.pub --insecure
    """
    ref = Reference.parse(reference)
    public_key = load_verification_key(key_path)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        client = connect(ref.registry)
        pinned = ref.with_digest(client.manifest_digest(ref.repository, ref.identifier))
        with verification_failure_as_json(pinned, enabled=as_json):
            result = verify_image(client, pinned, public_key, identity=identity)
    if as_json:
        echo_json(result.to_json_obj())
        return
    click.echo(f"verified {result.reference} (signed as {result.docker_reference})")
