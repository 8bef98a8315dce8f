"""``ecr-oci attest``, ``verify-attestation`` and ``approve``: in-toto attestations stored as cosign does.

    $ ecr-oci attest 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.key --insecure \\
          --predicate scan.json --type https://example.com/scan/v1
    $ ecr-oci approve 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.key --insecure \\
          --deployment sage-production --expires 2026-06-30
    $ ecr-oci verify-attestation 127.0.0.1:5000/waggle/hello:0.1.0 --key cosign.pub --insecure \\
          --type https://ecr.waggle-sensor.org/attestations/approval/v1 --deployment sage-production

An approval for deployment D has the predicate type ``…/approval/v1/D``
(:func:`ecr_oci.mediatypes.approval_type`); ``verify-attestation`` takes either that type or the
base type ``…/approval/v1`` with ``--deployment D``, and checks the approval's rules (deployment,
expiry) for both.

Keys and their password are read as ``sign``/``verify`` read them (:mod:`ecr_oci.cli.signing`).
Exit codes: 0 ok, 1 registry failure, 2 bad input, 4 verification failed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import RegistryOptions, echo_json, registry_options
from ecr_oci.cli.signing import load_signing_key, load_verification_key, verification_failure_as_json
from ecr_oci.mediatypes import approval_deployment, approval_type, check_deployment_name
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


def _deployment_to_check(uri: str, deployment: str | None) -> str | None:
    """The deployment whose approval ``verify-attestation`` checks; ``None`` for other types.

    ``--type …/approval/v1 --deployment D`` and ``--type …/approval/v1/D`` mean the same: approvals
    for D, which have the predicate type ``…/approval/v1/D``.
    """
    if uri == APPROVAL_TYPE:
        if not deployment:
            raise click.UsageError(f"--deployment is required with --type {APPROVAL_TYPE}")
        try:
            return check_deployment_name(deployment)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--deployment") from None
    named = approval_deployment(uri)
    if named is None and deployment:
        raise click.UsageError(
            f"--deployment applies only to --type {APPROVAL_TYPE} (or {APPROVAL_TYPE}/DEPLOYMENT)"
        )
    if named is not None and deployment not in (None, named):
        raise click.UsageError(
            f"--type {uri} is the approval type of deployment {named!r}, not {deployment!r}"
        )
    return named


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
    Writes an attestation of type https://ecr.waggle-sensor.org/attestations/approval/v1/DEPLOYMENT
    (one type per deployment, so admission policies for one deployment never judge the approvals
    for another; mediatypes/approval.md) that admission policies and `ecr-oci verify-attestation
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
    "--deployment",
    help="With --type …/approval/v1: require an unexpired approval for this deployment "
    "(the same as --type …/approval/v1/DEPLOYMENT).",
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
    Approvals: --type https://ecr.waggle-sensor.org/attestations/approval/v1 --deployment D
    looks for the approval type of deployment D (…/approval/v1/D; giving that type alone is the
    same) and also checks the approval's deployment and expiry.

    \b
    Examples:
      ecr-oci verify-attestation 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.pub \\
          --insecure --type https://slsa.dev/provenance/v1 --json
      ecr-oci verify-attestation 127.0.0.1:5000/waggle/hello-sensor:0.1.0 --key cosign.pub \\
          --insecure --type https://ecr.waggle-sensor.org/attestations/approval/v1 \\
          --deployment sage-production
    """
    uri = _predicate_type(predicate_type)
    deployment = _deployment_to_check(uri, deployment)
    looked_for = approval_type(deployment) if deployment else uri
    ref = Reference.parse(reference)
    public_key = load_verification_key(key_path)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        client = connect(ref.registry)
        pinned = ref.with_digest(client.manifest_digest(ref.repository, ref.identifier))
        with verification_failure_as_json(pinned, enabled=as_json, predicateType=looked_for):
            if deployment:
                approval = verify_approval(
                    client, pinned, public_key, deployment=deployment, now=datetime.now(UTC)
                )
                document, verified = approval.to_json_obj(), approval.attestation
            else:
                verified = verify_attestation(client, pinned, public_key, predicate_type=uri)
                document = verified.to_json_obj()
    if as_json:
        echo_json(document)
        return
    click.echo(f"verified {verified.reference} ({verified.predicate_type})")
    if deployment:
        until = document["approval"].get("expires", "no expiry")
        click.echo(f"  approved for {deployment} until {until}")
