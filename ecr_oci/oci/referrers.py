"""OCI 1.1 referrers: the API where the registry has it, the tag-schema fallback where not.

    >>> fallback_tag(Digest.parse("sha256:" + "ab" * 32))
    'sha256-abababababababababababababababababababababababababababababababab'

distribution 2.8 has no referrers API (REFERENCE.md): ``GET /v2/<name>/referrers/<digest>`` is a
plain-text 404 and a manifest PUT with ``subject`` gets no ``OCI-Subject`` header. Then, per
distribution-spec §"Referrers Tag Schema", the client keeps an image index tagged ``sha256-<hex>``
listing the referrers' descriptors (with ``artifactType`` and annotations), read-modify-written on
each attach. Concurrent writers can lose an entry; :func:`attach` re-reads after writing and retries
so that a lost update is repaired by whoever lost it.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import TypeVar

from ecr_oci.digest import Digest
from ecr_oci.errors import NotFound, RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Index, Manifest, RawManifest
from ecr_oci.oci.registry import RegistryClient

_T = TypeVar("_T")
_ATTACH_ATTEMPTS = 5
_READ_ATTEMPTS = 5
#: hex characters of the referrer's digest in its own tag (``sha256-<subject>.<32 hex>``)
_REFERRER_TAG_HEX = 32


#: The tag schema: ``sha256-<hex>`` (a fallback index), ``.sig``/``.att`` (cosign), ``.<32 hex>`` (a
#: referrer's own tag, :func:`referrer_tag`).
_REFERRER_SUFFIX = re.compile(rf"[0-9a-f]{{{_REFERRER_TAG_HEX}}}")
_SUBJECT_TAG = re.compile(rf"^(sha256)-([0-9a-f]{{64}})(?:\.(sig|att|[0-9a-f]{{{_REFERRER_TAG_HEX}}}))?$")


def fallback_tag(subject: Digest) -> str:
    return subject.tag_form


def subject_of_tag(tag: str) -> tuple[Digest, str] | None:
    """``(subject, suffix)`` of a tag-schema tag (suffix ``""`` for the fallback index itself);
    ``None`` for any other tag, however close (anyone who may push can make such tags).

    >>> subject_of_tag("sha256-" + "a" * 64 + ".sig")[1], subject_of_tag("sha256-latest." + "ab" * 16)
    ('sig', None)
    """
    found = _SUBJECT_TAG.match(tag)
    if not found:
        return None
    return Digest(found.group(1), found.group(2)), found.group(3) or ""


def referrer_tag(subject: Digest, referrer: Digest) -> str:
    """The tag a referrer is pushed under: ``<fallback tag>.<first 32 hex of its digest>``.

    Why: distribution 2.8 has no compare-and-swap, so concurrent read-modify-writes of the fallback
    index lose entries. A tag of its own per referrer is written without a race; listings merge
    these tags into the index, so no referrer is ever lost (and none is untagged for GC).
    """
    return f"{fallback_tag(subject)}.{referrer.hex[:_REFERRER_TAG_HEX]}"


def list_referrers(
    client: RegistryClient, repository: str, subject: Digest, *, artifact_type: str | None = None
) -> list[Descriptor]:
    """Descriptors of the manifests whose ``subject`` is ``subject`` (filtered by artifact type)."""
    found = referrers_from_api(client, repository, subject, artifact_type=artifact_type)
    if found is None:
        found = _fallback_referrers(client, repository, subject)
    if artifact_type is not None:
        found = [d for d in found if d.artifactType == artifact_type]
    return found


def referrers_from_api(
    client: RegistryClient, repository: str, subject: Digest, *, artifact_type: str | None = None
) -> list[Descriptor] | None:
    """What the registry's referrers API lists for ``subject``; ``None`` when it has no such API.

    The filter is only a hint to the registry (it may ignore it): :func:`list_referrers` filters
    again.
    """
    response = client.send_raw(
        "GET",
        f"/v2/{repository}/referrers/{subject}",
        what=f"list referrers of {subject}",
        ok=(200, 404),
        params={"artifactType": artifact_type} if artifact_type else None,
        headers={"Accept": MediaType.OCI_INDEX},
    )
    if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(
        MediaType.OCI_INDEX
    ):
        return None
    raw = RawManifest(MediaType.OCI_INDEX, Digest.of(response.content), response.content)
    return list(raw.as_index(url=str(response.url)).manifests)


def referrer_tag_subjects(tags: list[str]) -> dict[str, list[str]]:
    """The referrer tags among ``tags``, by their fallback tag (``sha256-<subject hex>``)."""
    found: dict[str, list[str]] = {}
    for tag in tags:
        parsed = subject_of_tag(tag)
        if parsed is not None and len(parsed[1]) == _REFERRER_TAG_HEX:
            found.setdefault(fallback_tag(parsed[0]), []).append(tag)
    return found


def repair_fallback_index(
    client: RegistryClient, repository: str, subject: Digest, *, tags: list[str] | None = None
) -> int:
    """Rewrite the fallback index of ``subject`` so that it lists every referrer tag; returns how
    many entries it lacked (0: nothing written).

    Why: concurrent attaches race on the fallback index (no compare-and-swap in distribution
    2.8), and tools that read only the index (``oras discover``, cosign) would miss the lost
    entries; the per-referrer tags still have them. The ECR service runs this in its reconcile.
    """
    indexed = list(_fallback_index(client, repository, subject).manifests)
    lost = _lost_referrers(client, repository, subject, indexed, tags)
    if lost:
        retry_busy(
            functools.partial(
                client.put_manifest,
                repository,
                fallback_tag(subject),
                Index(manifests=indexed + lost).to_bytes(),
                MediaType.OCI_INDEX,
            )
        )
    return len(lost)


def _fallback_referrers(client: RegistryClient, repository: str, subject: Digest) -> list[Descriptor]:
    """The fallback index's entries plus every referrer tag the index lost."""
    indexed = list(_fallback_index(client, repository, subject).manifests)
    return indexed + _lost_referrers(client, repository, subject, indexed, None)


def _lost_referrers(
    client: RegistryClient,
    repository: str,
    subject: Digest,
    indexed: list[Descriptor],
    tags: list[str] | None,
) -> list[Descriptor]:
    """The referrers whose own tags exist but which ``indexed`` lacks (``tags``: the repository's
    tag list when the caller has it)."""
    found: list[Descriptor] = []
    known = {d.digest.hex[:_REFERRER_TAG_HEX] for d in indexed}
    # by prefix, not subject_of_tag: a sha512 subject's tag holds only 64 of its hex digits
    prefix = fallback_tag(subject) + "."
    for tag in client.list_tags(repository) if tags is None else tags:
        suffix = tag.removeprefix(prefix)
        if suffix == tag or not _REFERRER_SUFFIX.fullmatch(suffix):
            continue  # not a referrer tag of ``subject`` (cosign's ``.sig``/``.att`` are not)
        if suffix in known:
            continue  # already listed
        try:
            raw = retry_busy(functools.partial(client.get_manifest, repository, tag))
        except NotFound:
            continue  # listed while its PUT is still writing it (distribution creates the folder first)
        found.append(_descriptor_of(raw.as_manifest(), raw.digest, len(raw.data)))
        known.add(suffix)
    return found


def retry_busy(call: Callable[[], _T]) -> _T:
    """``call()``, again a few times on HTTP 500: distribution 2.8 answers 500 ("invalid checksum
    digest format") to a read of a tag that a concurrent PUT is rewriting, and to a PUT or a blob
    HEAD racing a concurrent commit of the same path, and MANIFEST_BLOB_UNKNOWN to a manifest PUT
    whose blob (pushed by us a moment before) another upload of the same digest is re-linking
    (both seen with 50 concurrent attaches). Only for idempotent calls: reads, and PUTs by digest
    or of a whole tag."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            return call()
        except RegistryError as err:
            busy = err.status == 500 or "MANIFEST_BLOB_UNKNOWN" in err.codes
            if not busy or attempt + 1 == _READ_ATTEMPTS:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _fallback_index(client: RegistryClient, repository: str, subject: Digest) -> Index:
    tag = fallback_tag(subject)

    def fetch() -> Index:
        if client.head_manifest(repository, tag) is None:
            return Index(manifests=[])
        return client.get_manifest(repository, tag).as_index()

    return retry_busy(fetch)


def _descriptor_of(manifest: Manifest, digest: Digest, size: int) -> Descriptor:
    return Descriptor(
        mediaType=manifest.mediaType,
        digest=digest,
        size=size,
        artifactType=manifest.artifactType or manifest.config.mediaType,
        annotations=manifest.annotations,
    )


def attach(client: RegistryClient, repository: str, manifest: Manifest) -> Descriptor:
    """Push ``manifest`` (which has a ``subject``) and make it listable as a referrer.

    Returns the descriptor of the pushed manifest as it appears in referrers listings. Idempotent:
    attaching the same manifest twice leaves one entry. Without a referrers API the manifest is
    pushed under :func:`referrer_tag` (race-free), then the fallback index is updated for other
    tools; :func:`list_referrers` merges the tags in, so concurrent attaches lose nothing.
    """
    if manifest.subject is None:
        raise ValueError("a referrer manifest needs a subject")
    data = manifest.to_bytes()
    digest = Digest.of(data)
    subject = manifest.subject.digest
    headers = retry_busy(lambda: client.put_manifest(repository, digest, data, manifest.mediaType))
    descriptor = _descriptor_of(manifest, digest, len(data))
    if headers.get("OCI-Subject"):
        return descriptor  # the registry indexes referrers itself
    retry_busy(
        lambda: client.put_manifest(repository, referrer_tag(subject, digest), data, manifest.mediaType)
    )
    for _ in range(_ATTACH_ATTEMPTS):
        current = _fallback_referrers(client, repository, subject)
        if not any(d.digest == digest for d in current):
            current.append(descriptor)
        retry_busy(
            functools.partial(
                client.put_manifest,
                repository,
                fallback_tag(subject),
                Index(manifests=current).to_bytes(),
                MediaType.OCI_INDEX,
            )
        )
        # a concurrent writer may have replaced the index between our read and write: check
        if any(d.digest == digest for d in _fallback_index(client, repository, subject).manifests):
            return descriptor
    # the referrer tag is written: listings find it even though the index still lacks it
    return descriptor
