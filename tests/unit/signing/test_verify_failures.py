"""Which failure is reported when every candidate failed: one order for signatures, attestations
and admission (the check that got furthest says the most)."""

from __future__ import annotations

import re

from ecr_oci.errors import VerificationError


def _failures(*reasons: str) -> list[VerificationError]:
    return [VerificationError(f"failed: {reason}", reason=reason) for reason in reasons]


def test_the_failure_that_got_furthest_is_reported() -> None:
    assert (
        VerificationError.furthest(_failures("no-signature", "malformed", "wrong-key")).reason == "wrong-key"
    )
    assert VerificationError.furthest(_failures("wrong-key", "digest-mismatch", "malformed")).reason == (
        "digest-mismatch"
    )
    assert VerificationError.furthest(_failures("wrong-type", "wrong-key")).reason == "wrong-type"
    assert VerificationError.furthest(
        _failures("wrong-deployment", "expired", "identity-mismatch")
    ).reason == ("expired")
    # equals: the first stays; an unknown reason counts as nothing found
    first, second = _failures("digest-mismatch", "identity-mismatch")
    assert VerificationError.furthest([first, second]) is first
    assert VerificationError.furthest(_failures("something-new", "malformed")).reason == "malformed"


def test_every_documented_reason_has_a_place_in_the_order() -> None:
    documented = re.findall(r"``([a-z][a-z-]*)``", (VerificationError.__doc__ or "").split("``reason``")[1])
    placed = [reason for reasons in VerificationError.PROGRESS for reason in reasons]
    assert sorted(placed) == sorted(documented)
