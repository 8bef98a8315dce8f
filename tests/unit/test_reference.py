"""Image references: the registry host is required; tags, digests and names are checked when parsed."""

from __future__ import annotations

import pytest

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError
from ecr_oci.reference import Reference

DIGEST = Digest.parse("sha256:" + "ab" * 32)


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/waggle/hello-sensor:0.1.0", "127.0.0.1:5000", "waggle/hello-sensor", "0.1.0", None),
        ("registry.example.org/ns/app", "registry.example.org", "ns/app", None, None),
        ("localhost/app:latest", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c/d:1", "localhost:5000", "a/b/c/d", "1", None),
        ("Registry.Example.org:443/ns/app:v1", "Registry.Example.org:443", "ns/app", "v1", None),
        ("[::1]:5000/ns/app:1.0", "[::1]:5000", "ns/app", "1.0", None),
        ("[::1]/ns/app", "[::1]", "ns/app", None, None),
        (f"127.0.0.1:5000/ns/app@{DIGEST}", "127.0.0.1:5000", "ns/app", None, DIGEST),
        (f"127.0.0.1:5000/ns/app:1.0@{DIGEST}", "127.0.0.1:5000", "ns/app", "1.0", DIGEST),
        (
            "host.example:5000/ns/my_app.v2-x__y:Tag_1.0-rc.1",
            "host.example:5000",
            "ns/my_app.v2-x__y",
            "Tag_1.0-rc.1",
            None,
        ),
    ],
)
def test_parse_splits_host_repository_tag_and_digest(
    text: str, registry: str, repository: str, tag: str | None, digest: Digest | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "waggle/hello-sensor:0.1.0",  # first part is not a host (no dot, no port, not localhost)
        "hello-sensor",
        "hello-sensor:0.1.0",
        "127.0.0.1:5000",  # a host and nothing else
        "127.0.0.1:5000/",
        "host:port/ns/app",  # a port must be a number
        "::1/ns/app",  # IPv6 needs brackets
        "[::1/ns/app",
    ],
)
def test_parse_requires_a_registry_host(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        Reference.parse(text)


def test_missing_host_error_shows_an_example() -> None:
    with pytest.raises(InvalidReferenceError, match=r"registry host .*127\.0\.0\.1:5000/waggle"):
        Reference.parse("waggle/hello-sensor:0.1.0")


@pytest.mark.parametrize(
    "repository",
    [
        "ns/App",  # upper case
        "NS/app",
        "ns/app!",
        "ns/a b",
        "ns//app",
        "ns/-app",
        "ns/app-",
        "ns/app.",
        "ns/_app",
        "ns/a___b",  # at most two underscores
        "/ns/app",
    ],
)
def test_parse_rejects_invalid_repository_names(repository: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid repository"):
        Reference.parse(f"127.0.0.1:5000/{repository}:1.0")


@pytest.mark.parametrize(
    "tag", ["-leading-dash", ".leading-dot", "has space", "a" * 129, "a+b", "caf\u00e9", "\u00e9t\u00e9"]
)
def test_parse_rejects_invalid_tags(tag: str) -> None:
    # distribution's tag grammar is ASCII: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        Reference.parse(f"127.0.0.1:5000/ns/app:{tag}")


def test_empty_tag_is_rejected() -> None:
    with pytest.raises(InvalidReferenceError):
        Reference.parse("127.0.0.1:5000/ns/app:")


def test_longest_tag_is_accepted() -> None:
    assert Reference.parse("127.0.0.1:5000/ns/app:" + "a" * 128).tag == "a" * 128


def test_repository_length_limit_is_255() -> None:
    # "127.0.0.1:5000/" + repository; repository = "n/" + "a" * 253 = 255 characters
    longest = "n/" + "a" * 253
    assert Reference.parse(f"127.0.0.1:5000/{longest}").repository == longest
    with pytest.raises(InvalidReferenceError, match="invalid repository"):
        Reference.parse(f"127.0.0.1:5000/{longest}a")


@pytest.mark.parametrize(
    "digest_text", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "AB" * 32, "sha256" + "ab" * 32]
)
def test_parse_rejects_invalid_digests(digest_text: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        Reference.parse(f"127.0.0.1:5000/ns/app@{digest_text}")


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:5000/ns/app:1.0\n",
        "127.0.0.1:5000/ns/app\n",
        "127.0.0.1:5000\n/ns/app",
        f"127.0.0.1:5000/ns/app@{DIGEST}\n",
    ],
)
def test_parse_rejects_a_trailing_newline(text: str) -> None:
    # Python's ``$`` also matches before a final "\n": a newline must not slip into a tag or a URL
    with pytest.raises(InvalidReferenceError):
        Reference.parse(text)


def test_with_tag_replaces_tag_and_drops_digest() -> None:
    ref = Reference.parse(f"127.0.0.1:5000/ns/app:1.0@{DIGEST}")
    moved = ref.with_tag("2.0")
    assert str(moved) == "127.0.0.1:5000/ns/app:2.0"
    assert ref.tag == "1.0"  # references are immutable values


def test_with_digest_keeps_tag() -> None:
    ref = Reference.parse("127.0.0.1:5000/ns/app:1.0")
    assert str(ref.with_digest(DIGEST)) == f"127.0.0.1:5000/ns/app:1.0@{DIGEST}"


def test_identifier_prefers_digest_over_tag() -> None:
    assert Reference.parse("127.0.0.1:5000/ns/app:1.0").identifier == "1.0"
    assert Reference.parse(f"127.0.0.1:5000/ns/app:1.0@{DIGEST}").identifier == str(DIGEST)
    assert Reference.parse(f"127.0.0.1:5000/ns/app@{DIGEST}").identifier == str(DIGEST)


def test_identifier_without_tag_or_digest_raises() -> None:
    with pytest.raises(InvalidReferenceError, match="neither a tag nor a digest"):
        _ = Reference.parse("127.0.0.1:5000/ns/app").identifier


def test_repository_url_part_is_host_and_repository() -> None:
    ref = Reference.parse(f"127.0.0.1:5000/ns/app:1.0@{DIGEST}")
    assert ref.repository_url_part == "127.0.0.1:5000/ns/app"
