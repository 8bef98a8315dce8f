"""The referrers tag schema: only well-formed tags name a subject (anyone who may push makes tags)."""

from __future__ import annotations

import pytest

from ecr_oci.digest import Digest
from ecr_oci.oci.referrers import fallback_tag, referrer_tag_subjects, subject_of_tag

SUBJECT = Digest.of(b"subject")


def test_referrer_tags_are_grouped_by_their_fallback_tag() -> None:
    own = f"{fallback_tag(SUBJECT)}.{'c' * 32}"
    tags = [own, f"{fallback_tag(SUBJECT)}.sig", fallback_tag(SUBJECT), "0.1.0"]
    assert referrer_tag_subjects(tags) == {fallback_tag(SUBJECT): [own]}


@pytest.mark.parametrize(
    "tag",
    [
        "sha256-latest." + "abcdefgh" * 4,  # 32 characters after the dot, but no subject digest
        "sha256-" + "a" * 63 + "." + "c" * 32,
        "sha256-" + "A" * 64 + "." + "c" * 32,
        "sha512-" + "a" * 64 + "." + "c" * 32,
        "sha256-" + "a" * 64 + "." + "g" * 32,
    ],
)
def test_look_alike_tags_name_no_subject(tag: str) -> None:
    """Reconcile parses these into digests: a look-alike must not end its pass (it raised before)."""
    assert subject_of_tag(tag) is None
    assert referrer_tag_subjects([tag]) == {}
