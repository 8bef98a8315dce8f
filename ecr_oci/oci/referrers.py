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

from ecr_oci.digest import Digest
from ecr_oci.errors import RegistryError
from ecr_oci.mediatypes import MediaType
from ecr_oci.oci.models import Descriptor, Index, Manifest, RawManifest
from ecr_oci.oci.registry import RegistryClient

_ATTACH_ATTEMPTS = 5


def fallback_tag(subject: Digest) -> str:
    return subject.tag_form


def list_referrers(
    client: RegistryClient, repository: str, subject: Digest, *, artifact_type: str | None = None
) -> list[Descriptor]:
    """Descriptors of the manifests whose ``subject`` is ``subject`` (filtered by artifact type)."""
    response = client.send_raw(
        "GET", f"/v2/{repository}/referrers/{subject}", what=f"list referrers of {subject}",
        ok=(200, 404), params={"artifactType": artifact_type} if artifact_type else None,
        headers={"Accept": MediaType.OCI_INDEX},
    )
    if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(
        MediaType.OCI_INDEX
    ):
        raw = RawManifest(MediaType.OCI_INDEX, Digest.of(response.content), response.content)
        found = raw.as_index(url=str(response.url)).manifests
    else:
        found = _fallback_index(client, repository, subject).manifests
    if artifact_type is not None:
        found = [d for d in found if d.artifactType == artifact_type]
    return found


def _fallback_index(client: RegistryClient, repository: str, subject: Digest) -> Index:
    tag = fallback_tag(subject)
    if client.head_manifest(repository, tag) is None:
        return Index(manifests=[])
    return client.get_manifest(repository, tag).as_index()


def attach(client: RegistryClient, repository: str, manifest: Manifest) -> Descriptor:
    """Push ``manifest`` (which has a ``subject``) by digest and make it listable as a referrer.

    Returns the descriptor of the pushed manifest as it appears in referrers listings. Idempotent:
    attaching the same manifest twice leaves one entry.
    """
    if manifest.subject is None:
        raise ValueError("a referrer manifest needs a subject")
    data = manifest.to_bytes()
    digest = Digest.of(data)
    headers = client.put_manifest(repository, digest, data, manifest.mediaType)
    descriptor = Descriptor(
        mediaType=manifest.mediaType, digest=digest, size=len(data),
        artifactType=manifest.artifactType or manifest.config.mediaType,
        annotations=manifest.annotations,
    )
    if headers.get("OCI-Subject"):
        return descriptor  # the registry indexes referrers itself
    subject = manifest.subject.digest
    for _ in range(_ATTACH_ATTEMPTS):
        index = _fallback_index(client, repository, subject)
        if not any(d.digest == digest for d in index.manifests):
            updated = Index(manifests=[*index.manifests, descriptor])
            client.put_manifest(
                repository, fallback_tag(subject), updated.to_bytes(), MediaType.OCI_INDEX
            )
        # a concurrent writer may have replaced the index between our read and write: check
        if any(d.digest == digest for d in _fallback_index(client, repository, subject).manifests):
            return descriptor
    raise RegistryError(
        f"could not record referrer {digest} of {subject} in the fallback index after "
        f"{_ATTACH_ATTEMPTS} attempts (heavy concurrent attaching?); run the command again",
        url=f"{client.host}/{repository}:{fallback_tag(subject)}",
    )
