"""Digests: strict parsing, verification, hashing while streaming, and use inside pydantic models."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import BaseModel, ValidationError

from ecr_oci.digest import Digest, DigestingReader
from ecr_oci.errors import DigestMismatchError, InvalidReferenceError

EMPTY_JSON = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_of_hashes_with_sha256() -> None:
    assert str(Digest.of(b"{}")) == EMPTY_JSON


def test_parse_round_trips_sha256_and_sha512() -> None:
    sha512 = "sha512:" + hashlib.sha512(b"x").hexdigest()
    for text in (EMPTY_JSON, sha512):
        digest = Digest.parse(text)
        assert str(digest) == text
        assert digest.algorithm == text.split(":")[0]


@pytest.mark.parametrize(
    "text",
    [
        "md5:" + "a" * 32,  # unsupported algorithm
        "SHA256:" + "a" * 64,
        "sha1:" + "a" * 40,
        "sha256:" + "a" * 63,  # wrong length
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 128,  # a sha512 length under the sha256 name
        "sha512:" + "a" * 64,
        "sha256:" + "A" * 64,  # upper-case hex
        "sha256:" + "g" * 64,  # not hex
        "sha256:",
        "a" * 64,  # no algorithm
        "",
        "sha256:" + "a" * 64 + "\n",  # Python's ``$`` would accept a trailing newline
        " sha256:" + "a" * 64,
    ],
)
def test_parse_rejects_malformed_digests(text: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        Digest.parse(text)


def test_parse_error_quotes_only_a_bounded_prefix() -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        Digest.parse("x" * 10_000)
    assert len(str(caught.value)) < 200


def test_tag_form_is_the_referrers_fallback_tag() -> None:
    assert Digest.parse(EMPTY_JSON).tag_form == "sha256-" + EMPTY_JSON.split(":")[1]


def test_tag_form_of_a_sha512_digest_is_truncated_to_a_valid_tag() -> None:
    # distribution-spec "Referrers Tag Schema": <alg>-<ref>, <ref> limited to 64 characters;
    # "sha512-" + 128 hex would be 135 characters, over the 128 a tag may have
    digest = Digest.parse("sha512:" + hashlib.sha512(b"x").hexdigest())
    assert digest.tag_form == "sha512-" + digest.hex[:64]


def test_verify_accepts_matching_content() -> None:
    Digest.of(b"payload").verify(b"payload", what="blob")


def test_verify_raises_on_mismatch_naming_both_digests() -> None:
    expected = Digest.of(b"payload")
    with pytest.raises(DigestMismatchError) as caught:
        expected.verify(b"tampered", what="manifest ns/app@x")
    message = str(caught.value)
    assert "manifest ns/app@x" in message
    assert str(expected) in message
    assert str(Digest.of(b"tampered")) in message


def test_verify_uses_the_digest_algorithm() -> None:
    sha512 = Digest.parse("sha512:" + hashlib.sha512(b"data").hexdigest())
    sha512.verify(b"data", what="blob")
    with pytest.raises(DigestMismatchError):
        sha512.verify(b"other", what="blob")


def test_digesting_reader_passes_chunks_through_and_hashes_them() -> None:
    chunks = [b"abc", b"", b"def" * 1000, b"g"]
    reader = DigestingReader(iter(chunks))
    assert list(reader) == chunks
    assert reader.size == sum(len(c) for c in chunks)
    assert reader.digest == Digest.of(b"".join(chunks))


def test_digesting_reader_is_lazy() -> None:
    pulled: list[bytes] = []

    def source():
        for chunk in (b"one", b"two"):
            pulled.append(chunk)
            yield chunk

    reader = DigestingReader(source())
    iterator = iter(reader)
    assert next(iterator) == b"one"
    assert pulled == [b"one"]  # nothing read ahead: memory stays flat for big blobs
    assert reader.size == 3


def test_digesting_reader_with_sha512() -> None:
    reader = DigestingReader([b"data"], algorithm="sha512")
    list(reader)
    assert reader.digest == Digest.parse("sha512:" + hashlib.sha512(b"data").hexdigest())


def test_digests_compare_and_hash_by_value() -> None:
    assert Digest.parse(EMPTY_JSON) == Digest.of(b"{}")
    assert len({Digest.parse(EMPTY_JSON), Digest.of(b"{}")}) == 1


class _Holder(BaseModel):
    digest: Digest
    optional: Digest | None = None


def test_pydantic_model_round_trips_a_digest_as_its_string() -> None:
    model = _Holder.model_validate({"digest": EMPTY_JSON})
    assert model.digest == Digest.of(b"{}")
    assert model.model_dump(mode="json") == {"digest": EMPTY_JSON, "optional": None}
    dumped = model.model_dump_json()
    assert dumped == f'{{"digest":"{EMPTY_JSON}","optional":null}}'
    assert _Holder.model_validate_json(dumped) == model


def test_pydantic_model_accepts_a_digest_instance() -> None:
    assert _Holder(digest=Digest.of(b"{}")).digest == Digest.of(b"{}")


@pytest.mark.parametrize("value", ["sha256:short", 42, None, "sha256:" + "A" * 64])
def test_pydantic_model_rejects_invalid_digests(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        _Holder.model_validate({"digest": value})
    assert caught.value.errors()[0]["loc"] == ("digest",)
