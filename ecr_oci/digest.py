"""Content digests (OCI image-spec "descriptor" digests), computed while data streams.

>>> d = Digest.of(b"{}")
>>> str(d)
'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
>>> Digest.parse(str(d)).hex[:8]
'44136fa3'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic_core import core_schema

from ecr_oci.errors import DigestMismatchError, InvalidReferenceError

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256|sha512):([a-f0-9]+)\Z")


@dataclass(frozen=True, order=True)
class Digest:
    """``algorithm:hex`` — only sha256/sha512, lower-case hex of the right length (image-spec §descriptor)."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>``; raise :class:`InvalidReferenceError` on anything else."""
        match = _DIGEST_RE.match(text)
        if not match or len(match.group(2)) != _ALGORITHMS[match.group(1)]:
            raise InvalidReferenceError(
                f"invalid digest {text[:80]!r}: expected sha256:<64 lower-case hex characters>"
            )
        return cls(match.group(1), match.group(2))

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def tag_form(self) -> str:
        """The referrers tag-schema form ``sha256-<hex>`` (distribution-spec §referrers tag schema)."""
        return f"{self.algorithm}-{self.hex[:64]}"

    def verify(self, data: bytes, *, what: str) -> None:
        """Raise :class:`DigestMismatchError` unless ``data`` hashes to this digest."""
        actual = hashlib.new(self.algorithm, data).hexdigest()
        if actual != self.hex:
            raise DigestMismatchError(f"{what}: content hashes to {self.algorithm}:{actual}, expected {self}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        """Let pydantic models hold a ``Digest`` that (de)serialises as its string form."""

        def validate(value: Any) -> Digest:
            if isinstance(value, Digest):
                return value
            if not isinstance(value, str):
                raise ValueError("digest must be a string")
            try:
                return cls.parse(value)
            except InvalidReferenceError as err:
                raise ValueError(str(err)) from None

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.to_string_ser_schema()
        )


class DigestingReader:
    """Wrap an iterable of byte chunks, hashing and counting as they pass.

    Why: uploads and downloads must be verified without holding a blob in memory (STYLE §7).
    """

    def __init__(self, chunks: Iterable[bytes], *, algorithm: str = "sha256") -> None:
        self._chunks = chunks
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hash.hexdigest())
