"""A distribution-spec v2 / OCI 1.1 registry client: blobs, manifests, tags.

    >>> client = RegistryClient("127.0.0.1:5000", insecure=True)   # doctest: +SKIP
    >>> client.manifest_digest("waggle/hello-sensor", "0.1.0")      # doctest: +SKIP
    Digest(algorithm='sha256', hex='…')

Why our own client (docs/decisions.md): oras-py 0.2 lacks indexes, ``artifactType`` and referrers and
slurps blobs on monolithic upload; python-dxf has no OCI 1.1 either. This module is the small part a
library does not give us: the wire protocol with streaming, resumable uploads. Referrers live in
:mod:`ecr_oci.oci.referrers`, auth in :mod:`ecr_oci.oci.auth`.

Errors: every failure is a :class:`~ecr_oci.errors.RegistryError` (``NotFound``/``AuthError``
subclasses) with the registry's error codes and a redacted URL. Only temporary failures (connection
errors, 429, 502-504, ``TOOMANYREQUESTS``/``UNAVAILABLE``) are retried, a few times with short backoff.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from ecr_oci.digest import Digest, DigestingReader
from ecr_oci.errors import AuthError, DigestMismatchError, NotFound, RegistryError
from ecr_oci.mediatypes import MANIFEST_ACCEPT
from ecr_oci.oci.auth import Credentials, RegistryAuth
from ecr_oci.oci.models import MAX_MANIFEST_BYTES, Descriptor, RawManifest
from ecr_oci.oci.redact import redact_url

#: Blobs up to this size go in one POST+PUT; bigger ones in PATCH chunks (resumable).
MONOLITHIC_LIMIT = 16 * 1024 * 1024
#: PATCH chunk size: large enough to run near monolithic speed, small enough to resume cheaply.
CHUNK_SIZE = 128 * 1024 * 1024
_TEMPORARY_STATUS = frozenset({429, 502, 503, 504})
_TEMPORARY_CODES = frozenset({"TOOMANYREQUESTS", "UNAVAILABLE"})
_T = TypeVar("_T")

#: ``opener(offset)`` yields a blob's bytes from ``offset`` on; uploads call it again to resume.
BlobOpener = Callable[[int], Iterable[bytes]]
Progress = Callable[[int], None]


class RegistryClient:
    """One registry host. Thread-safe as httpx.Client is; create one per push or pull."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        auth: httpx.Auth | None = None,
        user_agent: str = "ecr-oci",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        chunk_size: int = CHUNK_SIZE,
        monolithic_limit: int = MONOLITHIC_LIMIT,
    ) -> None:
        self.host = host
        self.base_url = f"{'http' if insecure else 'https'}://{host}"
        self._retries = retries
        self._backoff = backoff
        self.chunk_size = chunk_size
        self.monolithic_limit = monolithic_limit
        self._http = httpx.Client(
            auth=auth if auth is not None else RegistryAuth(credentials=credentials),
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": user_agent},
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urljoin(self.base_url, path)

    def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200,),
        not_found_ok: bool = False,
        retry: bool = True,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request, retrying temporary failures; raise RegistryError for anything else."""
        attempts = self._retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                request = self._http.build_request(method, url, **kwargs)
                response = self._http.send(request, stream=stream)
            except (httpx.TransportError, httpx.StreamConsumed) as err:
                # StreamConsumed: a streamed body met an auth challenge and cannot be replayed;
                # uploads resume from the registry's upload status instead.
                if attempt + 1 < attempts:
                    time.sleep(self._backoff * 2**attempt)
                    continue
                raise RegistryError(
                    f"{what}: cannot reach the registry ({type(err).__name__}); is it running and "
                    "is the address right? (plain HTTP needs --insecure)",
                    url=redact_url(url),
                ) from None
            if response.status_code in ok or (not_found_ok and response.status_code == 404):
                return response
            if stream:
                response.read()
            codes = error_codes(response.content)
            if is_temporary(response.status_code, codes) and attempt + 1 < attempts:
                time.sleep(self._backoff * 2**attempt)
                continue
            raise error_for(what, url, response.status_code, response.content, codes)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API version check ----------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: raises when the host is not a registry or refuses us."""
        self._send("GET", self._url("/v2/"), what="check registry")

    # -- blobs --------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The blob's size if the repository has it (HEAD), else ``None``."""
        response = self._send(
            "HEAD",
            self._url(f"/v2/{repository}/blobs/{digest}"),
            what=f"check blob {digest}",
            not_found_ok=True,
        )
        if response.status_code == 404:
            return None
        return int(response.headers.get("Content-Length", "0"))

    def mount_blob(self, repository: str, digest: Digest, source_repository: str) -> bool:
        """Cross-repository mount; ``True`` when the registry linked the blob without an upload.

        A registry that cannot mount answers 202 with an upload session, which we abandon (cancel).
        """
        response = self._send(
            "POST",
            self._url(f"/v2/{repository}/blobs/uploads/"),
            params={"mount": str(digest), "from": source_repository},
            what=f"mount blob {digest} from {source_repository}",
            ok=(201, 202),
            extensions={"ecr_extra_scopes": [f"repository:{source_repository}:pull"]},
        )
        if response.status_code == 201:
            return True
        self._cancel_upload(response)
        return False

    def push_blob_bytes(self, repository: str, data: bytes) -> Descriptor:
        """Upload a small in-memory blob (configs, payloads) if missing; return its descriptor parts."""
        digest = Digest.of(data)
        self.push_blob(repository, digest, len(data), lambda offset: [data[offset:]])
        return Descriptor(mediaType="application/octet-stream", digest=digest, size=len(data))

    def push_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        opener: BlobOpener,
        *,
        progress: Progress | None = None,
        check_exists: bool = True,
    ) -> bool:
        """Upload a blob unless the repository has it; ``True`` when bytes were sent.

        Small blobs go in one POST + PUT; large ones in PATCH chunks of ``chunk_size``. After a
        dropped connection the upload status (``GET`` on the session, ``Range`` header) says how much
        arrived and we continue from there with ``opener(offset)``. distribution 2.8 refuses a
        session whose last PATCH was cut short (its signed state no longer matches the bytes on
        disk: ``BLOB_UPLOAD_INVALID``); then the blob starts over in a new session. The registry
        checks the digest at the final PUT (``DIGEST_INVALID`` if the source changed under us).
        """
        if check_exists and self.blob_size(repository, digest) is not None:
            if progress:
                progress(size)
            return False
        what = f"upload blob {digest} to {repository}"

        def new_session() -> str:
            start = self._send("POST", self._url(f"/v2/{repository}/blobs/uploads/"), what=what, ok=(202,))
            return self._location(start)

        if size <= self.monolithic_limit:
            body = b"".join(opener(0))
            self._send(
                "PUT",
                _with_digest(new_session(), digest),
                content=body,
                what=what,
                ok=(201,),
                headers={"Content-Type": "application/octet-stream"},
            )
            if progress:
                progress(size)
            return True
        location = self._upload_chunks(new_session, size, opener, what=what, progress=progress)
        self._send(
            "PUT",
            _with_digest(location, digest),
            what=what,
            ok=(201,),
            headers={"Content-Length": "0"},
        )
        return True

    def _upload_chunks(
        self,
        new_session: Callable[[], str],
        size: int,
        opener: BlobOpener,
        *,
        what: str,
        progress: Progress | None,
    ) -> str:
        """PATCH the blob in chunks, resuming after dropped connections; returns the final URL."""
        location = new_session()
        offset = 0
        failures = 0
        while offset < size:
            source = _Pushback(opener(offset))
            try:
                while offset < size:
                    length = min(self.chunk_size, size - offset)
                    response = self._send(
                        "PATCH",
                        location,
                        what=what,
                        ok=(202,),
                        retry=False,
                        content=_take(source, length, progress),
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{offset + length - 1}",
                            "Content-Length": str(length),
                        },
                    )
                    location = self._location(response)
                    offset += length
            except RegistryError as err:
                if err.status is not None or failures >= self._retries:
                    raise
                failures += 1
                time.sleep(self._backoff * 2**failures)
                try:
                    location, offset = self._upload_status(location, what=what)
                except NotFound:
                    location, offset = new_session(), 0
        return location

    def _upload_status(self, location: str, *, what: str) -> tuple[str, int]:
        """Where an interrupted upload stands: (session URL, bytes the registry holds)."""
        response = self._send("GET", location, what=what, ok=(204,))
        received = response.headers.get("Range", "0-0")
        end = int(received.rsplit("-", 1)[-1])
        # distribution reports "0-0" for an empty session and "0-(n-1)" after n bytes
        offset = 0 if received == "0-0" and end == 0 else end + 1
        return self._location(response, fallback=location), offset

    def _cancel_upload(self, response: httpx.Response) -> None:
        # an abandoned session expires on its own: a failed cancel is nothing to report
        with contextlib.suppress(httpx.HTTPError):
            self._http.delete(self._location(response))

    def _location(self, response: httpx.Response, fallback: str | None = None) -> str:
        location = response.headers.get("Location")
        if not location:
            if fallback is not None:
                return fallback
            raise RegistryError(
                "registry sent no upload Location",
                url=redact_url(str(response.url)),
                status=response.status_code,
            )
        return str(urljoin(str(response.url), location))

    def iter_blob(
        self,
        repository: str,
        digest: Digest,
        *,
        progress: Progress | None = None,
        chunk_size: int = 1 << 20,
    ) -> Iterator[bytes]:
        """Stream a blob, hashing on the fly; raises DigestMismatchError after the last chunk if the
        content does not match — callers must treat what they got as untrusted until then."""
        url = self._url(f"/v2/{repository}/blobs/{digest}")
        response = self._send("GET", url, what=f"fetch blob {digest}", stream=True)
        try:
            reader = DigestingReader(response.iter_bytes(chunk_size), algorithm=digest.algorithm)
            try:
                for chunk in reader:
                    if progress:
                        progress(len(chunk))
                    yield chunk
            except httpx.TransportError as err:
                raise RegistryError(
                    f"fetch blob {digest}: connection lost ({type(err).__name__})",
                    url=redact_url(url),
                ) from None
            if reader.digest != digest:
                raise DigestMismatchError(
                    f"blob {digest} from {repository}: content hashes to {reader.digest}; "
                    "the registry's copy is corrupt"
                )
        finally:
            response.close()

    def get_blob(self, repository: str, digest: Digest, *, max_size: int = 16 << 20) -> bytes:
        """A small blob (config, payload) in memory, verified."""
        data = bytearray()
        for chunk in self.iter_blob(repository, digest):
            data += chunk
            if len(data) > max_size:
                raise RegistryError(
                    f"blob {digest} is larger than the {max_size}-byte limit for metadata",
                    url=redact_url(self._url(f"/v2/{repository}/blobs/{digest}")),
                )
        return bytes(data)

    # -- manifests ------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str | Digest) -> RawManifest:
        """Fetch a manifest or index by tag or digest, with the full Accept list (REFERENCE.md)."""
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        response = self._send(
            "GET",
            url,
            what=f"fetch manifest {repository}:{reference}",
            stream=True,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        try:
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_MANIFEST_BYTES:
                    raise RegistryError(
                        f"manifest {repository}:{reference} is over {MAX_MANIFEST_BYTES} bytes",
                        url=redact_url(url),
                    )
        finally:
            response.close()
        return RawManifest.received(
            reference,
            bytes(data),
            response.headers.get("Content-Type", ""),
            what=f"manifest {repository}@{reference}",
        )

    def head_manifest(self, repository: str, reference: str | Digest) -> Descriptor | None:
        """The descriptor of a tag or digest, or ``None`` when absent."""
        response = self._send(
            "HEAD",
            self._url(f"/v2/{repository}/manifests/{reference}"),
            what=f"check manifest {repository}:{reference}",
            not_found_ok=True,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code == 404:
            return None
        digest_text = response.headers.get("Docker-Content-Digest")
        if not digest_text:  # HEAD without the digest header: fall back to GET and hash
            raw = self.get_manifest(repository, reference)
            return raw.descriptor()
        return Descriptor(
            mediaType=response.headers.get("Content-Type", "").split(";")[0].strip(),
            digest=Digest.parse(digest_text),
            size=int(response.headers.get("Content-Length", "0")),
        )

    def manifest_digest(self, repository: str, reference: str | Digest) -> Digest:
        descriptor = self.head_manifest(repository, reference)
        if descriptor is None:
            raise NotFound(
                f"{self.host}/{repository}:{reference} not found",
                url=redact_url(self._url(f"/v2/{repository}/manifests/{reference}")),
                status=404,
            )
        return descriptor.digest

    def put_manifest(
        self, repository: str, reference: str | Digest, data: bytes, media_type: str
    ) -> httpx.Headers:
        """PUT a manifest by tag or digest; returns the response headers (``OCI-Subject`` …)."""
        response = self._send(
            "PUT",
            self._url(f"/v2/{repository}/manifests/{reference}"),
            what=f"push manifest {repository}:{reference}",
            ok=(201,),
            content=data,
            headers={"Content-Type": media_type},
        )
        digest_text = response.headers.get("Docker-Content-Digest")
        if digest_text and Digest.parse(digest_text) != Digest.of(data):
            raise DigestMismatchError(
                f"registry stored manifest {repository}:{reference} as {digest_text}, "
                f"expected {Digest.of(data)}"
            )
        return response.headers

    def delete_manifest(self, repository: str, digest: Digest) -> None:
        """DELETE by digest (distribution refuses DELETE by tag; this removes every tag on it)."""
        self._send(
            "DELETE",
            self._url(f"/v2/{repository}/manifests/{digest}"),
            what=f"delete manifest {repository}@{digest}",
            ok=(202,),
        )

    # -- tags -----------------------------------------------------------------------------------

    def list_tags(self, repository: str) -> list[str]:
        """All tags, following ``Link`` pagination; a missing repository has none."""
        url: str | None = self._url(f"/v2/{repository}/tags/list")
        tags: list[str] = []
        while url:
            response = self._send("GET", url, what=f"list tags of {repository}", not_found_ok=True)
            if response.status_code == 404:
                return []
            tags += response.json().get("tags") or []
            next_link: str | None = response.links.get("next", {}).get("url")
            url = urljoin(url, next_link) if next_link else None
        return sorted(tags)

    def send_raw(
        self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """Escape hatch for extension endpoints (referrers API): same auth, retries and errors."""
        return self._send(method, self._url(path), what=what, ok=ok, **kwargs)


def _with_digest(location: str, digest: Digest) -> str:
    """Add ``digest=`` to an upload URL, keeping its own query (``_state`` …): httpx's ``params=``
    would replace the query instead of merging it."""
    return str(httpx.URL(location).copy_merge_params({"digest": str(digest)}))


class _Pushback:
    """An iterator of byte chunks that can take back the unused tail of a chunk."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def next(self) -> bytes:
        if self._pending:
            chunk, self._pending = self._pending, b""
            return chunk
        return next(self._chunks, b"")

    def push_back(self, rest: bytes) -> None:
        self._pending = rest


def _take(source: _Pushback, length: int, progress: Progress | None) -> Iterator[bytes]:
    """Yield exactly ``length`` bytes from ``source``; the overflow stays for the next chunk."""
    remaining = length
    while remaining > 0:
        chunk = source.next()
        if not chunk:
            raise RegistryError("blob source ended early (file changed during push?)", url="")
        if len(chunk) > remaining:
            source.push_back(chunk[remaining:])
            chunk = chunk[:remaining]
        remaining -= len(chunk)
        if progress:
            progress(len(chunk))
        yield chunk


def error_codes(body: bytes) -> list[str]:
    """The ``code`` of each error in a registry's error body (distribution spec), if any."""
    try:
        document = json.loads(body)
        return [str(e.get("code")) for e in document.get("errors", []) if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return []


def is_temporary(status: int, codes: list[str]) -> bool:
    """Whether an answer is worth retrying (rate limits, gateways, ``UNAVAILABLE``)."""
    return status in _TEMPORARY_STATUS or bool(_TEMPORARY_CODES & set(codes))


def error_for(what: str, url: str, status: int, body: bytes, codes: list[str]) -> RegistryError:
    """The error to raise for a refused request: :class:`AuthError`, :class:`NotFound` or
    :class:`RegistryError`, with the registry's first message and a redacted URL."""
    safe_url = redact_url(url)
    message = what
    try:
        errors = json.loads(body).get("errors", [])
        if errors and isinstance(errors[0], dict) and errors[0].get("message"):
            message = f"{what}: {errors[0]['message']}"
    except (ValueError, AttributeError):
        pass
    if status in (401, 403):
        hint = " — log in with credentials that may access this repository"
        return AuthError(message + hint, url=safe_url, status=status, codes=codes)
    if status == 404:
        return NotFound(message, url=safe_url, status=status, codes=codes)
    return RegistryError(message, url=safe_url, status=status, codes=codes)
