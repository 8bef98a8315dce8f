"""URLs in errors and logs keep only query keys known to be harmless (STYLE §6)."""

from __future__ import annotations

import pytest

from ecr_oci.oci.redact import SAFE_QUERY_KEYS, redact_url


def test_userinfo_is_removed() -> None:
    redacted = redact_url("https://alice:s3cret@registry.example.org:5000/v2/ns/app/tags/list")
    assert redacted == "https://registry.example.org:5000/v2/ns/app/tags/list"


def test_upload_state_is_redacted_and_digest_kept() -> None:
    url = "http://127.0.0.1:5000/v2/ns/app/blobs/uploads/3f2a?_state=c2lnbmVk.c3RhdGU%3D&digest=sha256:ab"
    assert redact_url(url) == (
        "http://127.0.0.1:5000/v2/ns/app/blobs/uploads/3f2a?_state=REDACTED&digest=sha256:ab"
    )


@pytest.mark.parametrize(
    "key", ["access_token", "token", "X-Amz-Signature", "sig", "password", "account", "unknown"]
)
def test_unknown_query_keys_are_redacted(key: str) -> None:
    redacted = redact_url(f"https://storage.example.org/blob?{key}=VERYSECRET")
    assert "VERYSECRET" not in redacted
    assert f"{key}=REDACTED" in redacted


def test_safe_query_keys_keep_their_values() -> None:
    url = (
        "http://127.0.0.1:5000/v2/ns/app/blobs/uploads/?mount=sha256:ab&from=ns/src"
        "&n=10&last=v1&artifactType=application/vnd.x&service=reg&scope=repository:ns/app:pull"
    )
    redacted = redact_url(url)
    for pair in (
        "mount=sha256:ab",
        "from=ns/src",
        "n=10",
        "last=v1",
        "artifactType=application/vnd.x",
        "service=reg",
        "scope=repository:ns/app:pull",
    ):
        assert pair in redacted
    assert "REDACTED" not in redacted
    assert {"digest", "mount", "from", "scope"} <= SAFE_QUERY_KEYS


def test_fragment_is_dropped() -> None:
    assert redact_url("http://127.0.0.1:5000/v2/#token=abc") == "http://127.0.0.1:5000/v2/"


def test_space_separated_scopes_stay_readable() -> None:
    redacted = redact_url("http://t/token?scope=repository:a:pull%20repository:b:pull&password=x")
    assert "repository:a:pull" in redacted
    assert "repository:b:pull" in redacted
    assert "password=REDACTED" in redacted


def test_ipv6_host_keeps_its_brackets() -> None:
    # urlsplit().hostname drops the brackets; without them the URL is ambiguous ("::1:5000")
    assert redact_url("http://user:pw@[::1]:5000/v2/?_state=x") == "http://[::1]:5000/v2/?_state=REDACTED"


def test_url_without_query_is_unchanged() -> None:
    assert redact_url("http://127.0.0.1:5000/v2/ns/app/manifests/1.0") == (
        "http://127.0.0.1:5000/v2/ns/app/manifests/1.0"
    )
