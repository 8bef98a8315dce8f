"""Image references: ``host[:port]/ns/name[:tag][@sha256:…]``.

    >>> ref = Reference.parse("127.0.0.1:5000/waggle/hello-sensor:0.1.0")
    >>> (ref.registry, ref.repository, ref.tag)
    ('127.0.0.1:5000', 'waggle/hello-sensor', '0.1.0')
    >>> str(ref.with_tag("0.2.0"))
    '127.0.0.1:5000/waggle/hello-sensor:0.2.0'

The grammar follows distribution's reference package; unlike Docker we never invent a default registry
(``docker.io``) — ECR references always name their registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\])(?::[0-9]+)?\Z")


@dataclass(frozen=True)
class Reference:
    """A parsed reference; at least one of ``tag`` and ``digest`` is set for manifest operations."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a full reference; raise :class:`InvalidReferenceError` saying what is wrong."""
        rest, digest = text, None
        if "@" in rest:
            rest, digest_text = rest.split("@", 1)
            digest = Digest.parse(digest_text)
        host, sep, path = rest.partition("/")
        if not sep or not _HOST_RE.match(host) or not ("." in host or ":" in host or host == "localhost"):
            raise InvalidReferenceError(
                f"invalid reference {text!r}: it must start with a registry host "
                "(e.g. 127.0.0.1:5000/waggle/hello-sensor:0.1.0)"
            )
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, tag = path.rsplit(":", 1)
            if not _TAG_RE.match(tag):
                raise InvalidReferenceError(f"invalid tag {tag!r} in reference {text!r}")
        if not _REPOSITORY_RE.match(path) or len(path) > 255:
            raise InvalidReferenceError(
                f"invalid repository {path!r} in reference {text!r}: use lower-case "
                "letters, digits and separators (. _ -), parts joined by /"
            )
        return cls(registry=host, repository=path, tag=tag, digest=digest)

    @property
    def identifier(self) -> str:
        """What to put in ``/v2/<name>/manifests/<identifier>``: the digest when known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        if self.tag is not None:
            return self.tag
        raise InvalidReferenceError(f"reference {self} names neither a tag nor a digest")

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        return replace(self, digest=digest)

    @property
    def repository_url_part(self) -> str:
        """``host/ns/name`` — the docker-reference identity used by signatures."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.repository_url_part
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
