"""Opaque pagination cursors: a JSON value in unpadded base64url (search and the audit log).

    >>> decode_cursor(encode_cursor([1, "a"]))
    [1, 'a']

Callers check the decoded value's shape themselves; anything that does not even decode is the
same ``BAD_CURSOR`` error everywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ecr_oci.server.services.errors import InvalidInputError

__all__ = ["BAD_CURSOR", "decode_cursor", "encode_cursor"]

#: The error the API answers for a cursor it did not hand out.
BAD_CURSOR = "cursor is not valid: pass next_cursor unchanged"


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Any:
    """The value :func:`encode_cursor` wrapped; raises ``BAD_CURSOR`` when ``text`` is not one."""
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInputError(BAD_CURSOR, code="BAD_CURSOR") from None
