"""Redaction by allow-list for URLs that appear in errors and logs (STYLE §6).

    >>> redact_url("http://u:secret@127.0.0.1:5000/v2/a/blobs/uploads/x?_state=abc&digest=sha256:1")
    'http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=REDACTED&digest=sha256:1'

Upload locations carry a signed ``_state``, token realms may carry credentials and object-store
redirects carry signatures: only query keys known to be harmless survive.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SAFE_QUERY_KEYS = frozenset({"digest", "mount", "from", "n", "last", "artifactType", "service", "scope"})


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6: urlsplit drops the brackets
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    query = urlencode(
        [(k, v if k in SAFE_QUERY_KEYS else "REDACTED") for k, v in parse_qsl(parts.query)],
        safe=":/ ",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
