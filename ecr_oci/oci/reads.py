"""Small registry reads (manifests, configs, signature payloads) over a urllib3 keep-alive pool:
what the ECR service's indexer reads for every pushed manifest.

    >>> reader = MetadataReader("127.0.0.1:5000", insecure=True)        # doctest: +SKIP
    >>> reader.get_manifest("waggle/hello-sensor", "0.1.0").media_type  # doctest: +SKIP
    'application/vnd.oci.image.manifest.v1+json'

Why not :class:`~ecr_oci.oci.registry.RegistryClient` (httpx): these reads are the indexer's
largest cost, and httpx spends ~0.33 ms of CPU on a small GET where urllib3 spends ~0.18 ms
(docs/service.md, "Events → index"). They need none of what the client is for (uploads,
redirects, auth challenges: the service mints its own tokens, ``authorize``), so a plain pool
does. Failures raise the client's errors (:func:`~ecr_oci.oci.registry.error_for`), retried as
it retries them; an unreachable registry is a :class:`~ecr_oci.errors.RegistryError` without a
status, as there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import urllib3

from ecr_oci.digest import Digest
from ecr_oci.errors import RegistryError
from ecr_oci.mediatypes import MANIFEST_ACCEPT
from ecr_oci.oci.models import MAX_MANIFEST_BYTES, RawManifest
from ecr_oci.oci.redact import redact_url
from ecr_oci.oci.registry import error_codes, error_for, is_temporary

__all__ = ["MetadataReader", "MetadataReads"]


class MetadataReads(Protocol):
    """What the indexer reads: :class:`MetadataReader`, or a :class:`RegistryClient`."""

    def get_manifest(self, repository: str, reference: str | Digest) -> RawManifest: ...

    def get_blob(self, repository: str, digest: Digest, *, max_size: int = ...) -> bytes: ...

    def close(self) -> None: ...


class MetadataReader:
    """Manifests and small blobs of one registry host; thread-safe (one pool of ``connections``).

    ``authorize(path)`` gives the ``Authorization`` header value for a request path (``None``:
    none is sent).
    """

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        authorize: Callable[[str], str | None] | None = None,
        user_agent: str = "ecr-oci",
        timeout: float = 10.0,
        retries: int = 1,
        backoff: float = 0.2,
        connections: int = 16,
    ) -> None:
        self.base_url = f"{'http' if insecure else 'https'}://{host}"
        self._authorize = authorize
        self._user_agent = user_agent
        self._retries = retries
        self._backoff = backoff
        self._pool = urllib3.connection_from_url(
            self.base_url,
            maxsize=connections,
            block=False,
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            retries=False,
        )

    def close(self) -> None:
        self._pool.close()

    def get_manifest(self, repository: str, reference: str | Digest) -> RawManifest:
        """A manifest or index by tag or digest (verified when by digest), at most
        :data:`~ecr_oci.oci.models.MAX_MANIFEST_BYTES`."""
        path = f"/v2/{repository}/manifests/{reference}"
        what = f"fetch manifest {repository}:{reference}"
        body, content_type = self._get(path, what=what, accept=MANIFEST_ACCEPT, max_size=MAX_MANIFEST_BYTES)
        return RawManifest.received(reference, body, content_type, what=f"manifest {repository}@{reference}")

    def get_blob(self, repository: str, digest: Digest, *, max_size: int = 16 << 20) -> bytes:
        """A small blob (config, payload), verified, at most ``max_size`` bytes."""
        path = f"/v2/{repository}/blobs/{digest}"
        body, _ = self._get(path, what=f"fetch blob {digest}", accept="*/*", max_size=max_size)
        digest.verify(body, what=f"blob {digest} from {repository}")
        return body

    def _get(self, path: str, *, what: str, accept: str, max_size: int) -> tuple[bytes, str]:
        """The body and Content-Type of a 200 answer to ``GET path``; raises as the client does."""
        headers = {"Accept": accept, "User-Agent": self._user_agent}
        authorization = self._authorize(path) if self._authorize is not None else None
        if authorization:
            headers["Authorization"] = authorization
        url = self.base_url + path
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._pool.urlopen(
                    "GET", path, headers=headers, preload_content=False, redirect=False
                )
                try:
                    body = response.read(max_size + 1, decode_content=False)
                    if len(body) > max_size:
                        response.close()  # the rest is unread: this connection cannot be reused
                finally:
                    response.release_conn()
            except urllib3.exceptions.HTTPError as err:
                if not last:
                    time.sleep(self._backoff * 2**attempt)
                    continue
                raise RegistryError(
                    f"{what}: cannot reach the registry ({type(err).__name__}); is it running and is "
                    "the address right?",
                    url=redact_url(url),
                ) from None
            if response.status == 200:
                if len(body) > max_size:
                    raise RegistryError(f"{what}: over the {max_size}-byte limit", url=redact_url(url))
                return body, response.headers.get("Content-Type", "")
            codes = error_codes(body)
            if is_temporary(response.status, codes) and not last:
                time.sleep(self._backoff * 2**attempt)
                continue
            raise error_for(what, url, response.status, body, codes)
        raise AssertionError("unreachable")  # pragma: no cover
