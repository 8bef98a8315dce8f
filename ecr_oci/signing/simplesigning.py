"""The "simple signing" payload: the exact bytes a classic cosign signature covers.

    >>> from ecr_oci.digest import Digest
    >>> payload = SimpleSigning("127.0.0.1:5000/waggle/hello", Digest.of(b"x"))
    >>> payload.to_bytes()[:62]
    b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/wa'
    >>> SimpleSigning.parse(payload.to_bytes()) == payload
    True

Format (REFERENCE.md "Signatures"; sigstore ``pkg/signature/payload``, which cosign v2.6 marshals with
Go's ``encoding/json``): compact JSON, keys in this order,
``{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},"type":
"cosign container image signature"},"optional":null}``. containers/image insists on exactly these keys,
with ``optional`` present (null or an object of annotations), so we always write it.

:meth:`SimpleSigning.parse` reads what cosign and ecr-oci write and raises
:class:`~ecr_oci.errors.VerificationError` (reason ``malformed``) for anything else. It does not decide
whether the payload is trusted: that is :mod:`ecr_oci.signing.verify`'s job, after the signature checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError, VerificationError

__all__ = ["SIGNATURE_TYPE", "SimpleSigning"]

#: ``critical.type`` of a cosign image signature (cosign's ``CosignSignatureType``).
SIGNATURE_TYPE = "cosign container image signature"
#: A payload is a few hundred bytes; refuse to parse anything absurd.
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class SimpleSigning:
    """What a signature says: "``digest`` is the image known as ``docker_reference``".

    ``docker_reference`` is ``host/namespace/name`` (cosign writes the repository, no tag);
    ``optional`` holds the signer's annotations, ``None`` when there are none.
    """

    docker_reference: str
    digest: Digest
    optional: Mapping[str, Any] | None = None

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "critical": {
                "identity": {"docker-reference": self.docker_reference},
                "image": {"docker-manifest-digest": str(self.digest)},
                "type": SIGNATURE_TYPE,
            },
            "optional": dict(self.optional) if self.optional is not None else None,
        }

    def to_bytes(self) -> bytes:
        """The payload bytes, as cosign's Go code would write them (map keys sorted, ``<>&`` escaped)."""
        return _go_json(self.to_json_obj())

    @classmethod
    def parse(cls, data: bytes) -> SimpleSigning:
        """Read a payload; raise ``VerificationError(reason="malformed")`` saying what is wrong."""
        if len(data) > MAX_PAYLOAD_BYTES:
            raise _malformed(f"signature payload is over {MAX_PAYLOAD_BYTES} bytes")
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _malformed("signature payload is not JSON") from None
        critical = document.get("critical") if isinstance(document, dict) else None
        if not isinstance(critical, dict):
            raise _malformed("signature payload has no 'critical' object")
        if critical.get("type") != SIGNATURE_TYPE:
            raise _malformed(
                f"signature payload type is {critical.get('type')!r}, expected {SIGNATURE_TYPE!r}"
            )
        reference = _member(critical, "identity", "docker-reference")
        digest_text = _member(critical, "image", "docker-manifest-digest")
        try:
            digest = Digest.parse(digest_text)
        except InvalidReferenceError:
            raise _malformed(
                f"signature payload docker-manifest-digest {digest_text[:80]!r} is not a digest"
            ) from None
        optional = document.get("optional")
        if optional is not None and not isinstance(optional, dict):
            raise _malformed("signature payload 'optional' is neither null nor an object")
        return cls(reference, digest, optional)


def _member(critical: dict[str, Any], outer: str, inner: str) -> str:
    value = critical.get(outer)
    found = value.get(inner) if isinstance(value, dict) else None
    if not isinstance(found, str):
        raise _malformed(f"signature payload has no critical.{outer}.{inner} string")
    return found


def _go_json(value: Any) -> bytes:
    """Compact JSON as Go's ``json.Marshal`` writes it: UTF-8, HTML characters escaped, map keys
    sorted (the struct fields of the payload happen to be in alphabetical order too)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode()


def _malformed(message: str) -> VerificationError:
    return VerificationError(message, reason="malformed")
