"""Approvals: a signed statement that one image digest may run on one deployment, until a date.

    >>> from datetime import UTC, datetime
    >>> approval = Approval(deployment="sage-prod", approvedAt=datetime(2025, 1, 1, tzinfo=UTC),
    ...                     expires=datetime(2025, 7, 1, tzinfo=UTC))
    >>> approval.to_predicate()
    {'deployment': 'sage-prod', 'approvedAt': '2025-01-01T00:00:00Z', 'expires': '2025-07-01T00:00:00Z'}
    >>> approval.valid_at(datetime(2025, 8, 1, tzinfo=UTC))
    False
    >>> approval.predicate_type
    'https://ecr.waggle-sensor.org/attestations/approval/v1/sage-prod'

Why an attestation and not a registry tag or a database row: the approval travels with the image
digest, in the registry, in the format admission controllers already verify (cosign's ``.att``,
Kyverno ``verifyImages.attestations``, policy-controller ``ClusterImagePolicy``); a node or cluster
needs only the approver's public key.

Why one predicate type per deployment (``…/approval/v1/<deployment>``, see
:func:`~ecr_oci.mediatypes.approval_type`): Kyverno (``verifyAttestations``),
policy-controller (``ValidatePolicyAttestationsForAuthority``) and ``cosign verify-attestation
--policy`` apply their condition to *every* attestation of the type they look for and fail on the
first that does not hold. Under one shared type an image approved for "testbed" and later for
"production" would be refused by both clusters; under a type per deployment each policy sees only
the approvals for its own deployment. The predicate still names the deployment and every verifier
still compares it (defence in depth: a statement whose type and ``deployment`` disagree is refused).
The schema and spec page are ``mediatypes/approval.schema.json`` and ``mediatypes/approval.md``.

:func:`verify_approval` raises :class:`~ecr_oci.errors.VerificationError` with reason
``no-attestation`` (no approval at all), ``wrong-deployment`` (approved, but for other
deployments; or a statement of this deployment's type whose predicate names another),
``expired`` (approved for this deployment, but every such approval has expired), or any reason of
:func:`~ecr_oci.signing.attest.verify_attestations` (wrong key, another image …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ecr_oci.errors import VerificationError
from ecr_oci.mediatypes import DEPLOYMENT_PATTERN, PredicateType, approval_deployment, approval_type
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing.attest import (
    AttestResult,
    VerifiedAttestation,
    attest_image,
    claimed_predicate_types,
    verify_attestations,
)
from ecr_oci.signing.keys import PublicKeys

__all__ = [
    "APPROVAL_TYPE",
    "DEPLOYMENT_PATTERN",
    "Approval",
    "VerifiedApproval",
    "approval_type",
    "approve_image",
    "verify_approval",
]

#: The base of the approval predicate types: an approval for ``D`` has the type ``APPROVAL_TYPE/D``
#: (:func:`approval_type`); nothing is written with the base itself.
APPROVAL_TYPE = PredicateType.APPROVAL.value
# RFC 3339 with a zone (Z or ±hh:mm), as the schema's pattern: no bare dates, no epoch numbers
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")


def _rfc3339_text(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 time with a zone (2025-07-01T00:00:00Z)")
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone")
    if not isinstance(value, str | datetime):
        raise ValueError("a time must be an RFC 3339 string")
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc)]


def _first_error(err: ValidationError) -> str:
    """``field: message`` of the first error (``predicate`` when it is about the whole object)."""
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'predicate'}: {first['msg']}"


class Approval(BaseModel):
    """The approval predicate (``mediatypes/approval.schema.json``); unknown keys are refused.

    Refusing unknown keys is deliberate: a future field that restricts an approval (a node list,
    say) must not be silently ignored by an older verifier; it comes with a ``v2`` type instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str = Field(pattern=DEPLOYMENT_PATTERN)
    approvedBy: str | None = Field(default=None, min_length=1, max_length=256)
    approvedAt: Timestamp
    expires: Timestamp | None = None
    note: str | None = Field(default=None, max_length=4096)

    def to_predicate(self) -> dict[str, Any]:
        """The JSON predicate, fields in schema order, absent optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def predicate_type(self) -> str:
        """The in-toto predicate type this approval is written with (its deployment's)."""
        return approval_type(self.deployment)

    def valid_at(self, now: datetime) -> bool:
        """Whether the approval has not expired at ``now`` (expiry is exclusive)."""
        return self.expires is None or now < self.expires

    @classmethod
    def from_predicate(cls, predicate: dict[str, Any]) -> Approval:
        """Read a predicate; raise ``VerificationError(reason="malformed")`` naming the bad field."""
        try:
            return cls.model_validate(predicate)
        except ValidationError as err:
            raise VerificationError(
                f"approval predicate is malformed ({_first_error(err)})", reason="malformed"
            ) from None


@dataclass(frozen=True)
class VerifiedApproval:
    """An approval whose signature, subject and deployment checked out and which has not expired."""

    attestation: VerifiedAttestation
    approval: Approval

    def to_json_obj(self) -> dict[str, Any]:
        return {**self.attestation.to_json_obj(), "approval": self.approval.to_predicate()}


def approve_image(
    client: RegistryClient,
    reference: Reference,
    key: ec.EllipticCurvePrivateKey,
    *,
    deployment: str,
    now: datetime,
    expires: datetime | None = None,
    approved_by: str | None = None,
    note: str | None = None,
) -> AttestResult:
    """Attest that the image ``reference`` resolves to may run on ``deployment``.

    The attestation's predicate type is ``approval_type(deployment)``; ``now`` (to the second)
    becomes ``approvedAt``. Raises ``ValueError`` for an invalid deployment name, naive times or
    an ``expires`` not after ``now``; registry errors as :func:`attest_image`.
    """
    try:
        approval = Approval(
            deployment=deployment,
            approvedAt=now.replace(microsecond=0),
            expires=expires,
            approvedBy=approved_by,
            note=note,
        )
    except ValidationError as err:
        raise ValueError(_first_error(err)) from None
    if approval.expires is not None and approval.expires <= approval.approvedAt:
        raise ValueError(f"expires ({approval.expires.isoformat()}) is not after now")
    return attest_image(
        client, reference, key, predicate=approval.to_predicate(), predicate_type=approval.predicate_type
    )


def verify_approval(
    client: RegistryClient,
    reference: Reference,
    public_key: PublicKeys,
    *,
    deployment: str,
    now: datetime,
) -> VerifiedApproval:
    """The newest valid approval of the image for ``deployment`` at ``now`` by ``public_key`` (or
    by any of several keys, read once for all); raises otherwise.

    Looks at the attestations of type ``approval_type(deployment)`` only; any one valid approval
    is enough (re-approving with a later expiry extends an approval). See the module docstring for
    the reasons raised; ``ValueError`` for a naive ``now`` or a name an approval cannot carry.
    """
    if now.tzinfo is None:
        raise ValueError(f"now ({now.isoformat()}) has no time zone")
    predicate_type = approval_type(deployment)
    try:
        attestations = verify_attestations(client, reference, public_key, predicate_type=predicate_type)
    except VerificationError as err:
        if err.reason != "no-attestation":
            raise
        _raise_if_approved_elsewhere(client, reference, public_key, deployment=deployment)
        raise
    name = attestations[0].reference
    approvals: list[tuple[VerifiedAttestation, Approval]] = []
    malformed: VerificationError | None = None
    for attestation in attestations:
        try:
            approvals.append((attestation, Approval.from_predicate(attestation.predicate)))
        except VerificationError as err:
            malformed = err
    if not approvals and malformed is not None:
        raise VerificationError(f"{name}: {malformed}", reason="malformed")
    # The signed type already says the deployment; the predicate must say the same (a statement
    # made by hand, e.g. with `cosign attest`, could disagree with its type).
    for_deployment = [(a, p) for a, p in approvals if p.deployment == deployment]
    if not for_deployment:
        named = ", ".join(sorted({p.deployment for _, p in approvals}))
        raise VerificationError(
            f"{name}: the approval of type {predicate_type} names deployment {named} in its "
            f"predicate, not {deployment!r}",
            reason="wrong-deployment",
        )
    current = [(a, p) for a, p in for_deployment if p.valid_at(now)]
    if not current:
        latest = max(p.expires for _, p in for_deployment if p.expires is not None)
        raise VerificationError(
            f"the approval of {name} for deployment {deployment!r} expired at "
            f"{latest.strftime('%Y-%m-%dT%H:%M:%SZ')}; approve it again with a new --expires",
            reason="expired",
        )
    attestation, approval = max(current, key=lambda pair: pair[1].approvedAt)
    return VerifiedApproval(attestation, approval)


def _raise_if_approved_elsewhere(
    client: RegistryClient,
    reference: Reference,
    public_key: PublicKeys,
    *,
    deployment: str,
) -> None:
    """Raise ``wrong-deployment`` naming the deployments the image has verified approvals for.

    Only to say more than "no attestation" when there is no approval for ``deployment``: the
    annotations say which other approval types to try, the key decides which count.
    """
    try:
        claimed = claimed_predicate_types(client, reference)
    except VerificationError:
        return
    verified: dict[str, VerifiedAttestation] = {}
    for predicate_type in sorted(set(claimed)):
        other = approval_deployment(predicate_type)
        if other is None or other == deployment:
            continue
        try:
            verified[other] = verify_attestations(
                client, reference, public_key, predicate_type=predicate_type
            )[0]
        except VerificationError:
            continue
    if verified:
        name = next(iter(verified.values())).reference
        raise VerificationError(
            f"{name} is approved for {', '.join(verified)}, not for deployment {deployment!r}",
            reason="wrong-deployment",
        )
