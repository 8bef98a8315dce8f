"""``ecr-oci attest``, ``verify-attestation`` and ``approve``: in-toto attestations stored as cosign does.

    $ ecr-oci attest 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.key --insecure \\
          --predicate scan.json --type https://example.com/scan/v1
    $ ecr-oci approve 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.key --insecure \\
          --deployment sage-production --expires 2026-06-30
    $ ecr-oci verify-attestation 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.pub --insecure \\
          --type https://ecr.waggle-sensor.org/attestations/approval/v1 --deployment sage-production

Keys and their password are read as ``sign``/``verify`` read them (:mod:`ecr_oci.cli.signing`).
Exit codes: 0 ok, 1 registry failure, 2 bad input, 4 verification failed.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import RegistryOptions, echo_json, registry_options
from ecr_oci.cli.signing import load_signing_key, load_verification_key
from ecr_oci.errors import VerificationError
from ecr_oci.reference import Reference
from ecr_oci.signing.approval import APPROVAL_TYPE, approve_image, verify_approval
from ecr_oci.signing.attest import AttestResult, attest_image, verify_attestation

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_DURATION = re.compile(r"^(\d+)([dh])$")


def _predicate_type(value: str) -> str:
    if not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", value):
        raise click.BadParameter(
            f"{value!r} is not a URI; give the predicate type in full, e.g. https://slsa.dev/provenance/v1",
            param_hint="--type",
        )
    return value


def _read_predicate(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise click.BadParameter(f"{path}: not a JSON file ({err})", param_hint="--predicate") from None
    if not isinstance(document, dict):
        raise click.BadParameter(f"{path}: the predicate must be a JSON object", param_hint="--predicate")
    return document


def parse_expires(text: str, *, now: datetime) -> datetime:
    """``--expires``: ``YYYY-MM-DD`` (valid through that day, UTC), an RFC 3339 time (UTC when it
    has no zone), or a duration from now (``90d``, ``12h``)."""
    duration = _DURATION.match(text)
    if duration:
        amount, unit = int(duration.group(1)), duration.group(2)
        return now + (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC) + timedelta(days=1)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use a date (2026-06-30), an RFC 3339 time (2026-06-30T12:00:00Z) or a "
            "duration (90d, 12h)",
            param_hint="--expires",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _echo_attested(result: AttestResult, as_json: bool) -> None:
    if as_json:
        echo_json(result.to_json_obj())
        return
    state = "attested" if result.added else "already attested"
    click.echo(f"{state} {result.reference} ({result.predicate_type}, {result.tag})")


@cli.command()
@click.argument("reference")
@click.option("--key", "key_path", required=True, type=_FILE, help="Private key (cosign.key).")
@click.option(
    "--predicate",
    "predicate_path",
    required=True,
    type=_FILE,
    help="JSON file holding the predicate (an object).",
)
@click.option("--type", "predicate_type", required=True, help="Predicate type URI.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@registry_options
def attest(
    reference: str,
    key_path: Path,
    predicate_path: Path,
    predicate_type: str,
    as_json: bool,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Sign an in-toto statement (PREDICATE of --type) about REFERENCE and attach it.

    \b
    The statement is about the digest REFERENCE resolves to, wrapped in a DSSE envelope and stored
    as cosign stores attestations (tag sha256-<hex>.att), so `cosign verify-attestation` accepts
    it. Attesting the same predicate again with the same key adds nothing.

    \b
    Example:
      ecr-oci attest 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.key --insecure \\
          --predicate scan.json --type https://example.com/scan/v1
    """
    ref = Reference.parse(reference)
    predicate = _read_predicate(predicate_path)
    uri = _predicate_type(predicate_type)
    key = load_signing_key(key_path)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        result = attest_image(connect(ref.registry), ref, key, predicate=predicate, predicate_type=uri)
    _echo_attested(result, as_json)


@cli.command()
@click.argument("reference")
@click.option("--deployment", required=True, help="The deployment the image may run on.")
@click.option("--key", "key_path", required=True, type=_FILE, help="Private key (cosign.key).")
@click.option("--expires", help="Until when: 2026-06-30 (through that day, UTC), an RFC 3339 time, or 90d.")
@click.option("--note", help="Free text stored with the approval (a ticket, a review link).")
@click.option("--approved-by", help="Who approves, for the audit trail (the key authenticates).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@registry_options
def approve(
    reference: str,
    deployment: str,
    key_path: Path,
    expires: str | None,
    note: str | None,
    approved_by: str | None,
    as_json: bool,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Approve the image REFERENCE resolves to for --deployment (a signed attestation).

    \b
    Writes an attestation of type https://ecr.waggle-sensor.org/attestations/approval/v1
    (mediatypes/approval.md) that admission policies and `ecr-oci verify-attestation
    --deployment` check with the public key.

    \b
    Example:
      ecr-oci approve 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.key --insecure \\
          --deployment sage-production --expires 2026-06-30
    """
    ref = Reference.parse(reference)
    now = datetime.now(UTC).replace(microsecond=0)
    until = parse_expires(expires, now=now) if expires else None
    key = load_signing_key(key_path)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        try:
            result = approve_image(
                connect(ref.registry),
                ref,
                key,
                deployment=deployment,
                now=now,
                expires=until,
                approved_by=approved_by,
                note=note,
            )
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
    _echo_attested(result, as_json)


@cli.command("verify-attestation")
@click.argument("reference")
@click.option("--key", "key_path", required=True, type=_FILE, help="Public key (cosign.pub).")
@click.option("--type", "predicate_type", required=True, help="Predicate type URI to look for.")
@click.option(
    "--deployment", help="With the approval type: require an unexpired approval for this deployment."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"verified": true/false, "digest": …, "predicate" or "reason": …}.',
)
@registry_options
def verify_attestation_command(
    reference: str,
    key_path: Path,
    predicate_type: str,
    deployment: str | None,
    as_json: bool,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Exit 0 only if an attestation of --type signed by --key is about the digest REFERENCE names.

    \b
    Otherwise says why and exits 4: no-attestation, wrong-key (another key, or a changed payload),
    digest-mismatch (made for another image), wrong-type, malformed; for approvals also
    wrong-deployment and expired.

    \b
    Example:
      ecr-oci verify-attestation 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.pub \\
          --insecure --type https://slsa.dev/provenance/v1 --json
    """
    uri = _predicate_type(predicate_type)
    if uri == APPROVAL_TYPE and not deployment:
        raise click.UsageError("--deployment is required with the approval type")
    if deployment and uri != APPROVAL_TYPE:
        raise click.UsageError(f"--deployment applies only to --type {APPROVAL_TYPE}")
    ref = Reference.parse(reference)
    public_key = load_verification_key(key_path)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        client = connect(ref.registry)
        pinned = ref.with_digest(client.manifest_digest(ref.repository, ref.identifier))
        try:
            if deployment:
                approval = verify_approval(
                    client, pinned, public_key, deployment=deployment, now=datetime.now(UTC)
                )
                document, verified = approval.to_json_obj(), approval.attestation
            else:
                verified = verify_attestation(client, pinned, public_key, predicate_type=uri)
                document = verified.to_json_obj()
        except VerificationError as err:
            if not as_json:
                raise
            echo_json(
                {
                    "verified": False,
                    "reference": str(pinned),
                    "digest": str(pinned.digest),
                    "predicateType": uri,
                    "reason": err.reason,
                    "message": str(err),
                }
            )
            sys.exit(err.exit_code)
    if as_json:
        echo_json(document)
        return
    click.echo(f"verified {verified.reference} ({verified.predicate_type})")
    if deployment:
        until = document["approval"].get("expires", "no expiry")
        click.echo(f"  approved for {deployment} until {until}")
