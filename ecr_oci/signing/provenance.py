"""SLSA v1 provenance for a push: what was built, from what, by which builder, with which settings.

    >>> from datetime import UTC, datetime
    >>> from ecr_oci.bundle.spec import Source
    >>> predicate = build_provenance(
    ...     source=Source(url="https://github.com/waggle-sensor/hello.git", commit="a" * 40),
    ...     ecr_yaml_digest=Digest.of(b"ecr.yaml bytes"),
    ...     base_image=Reference.parse("127.0.0.1:5000/base/busybox:1.36"),
    ...     base_digest=Digest.of(b"base"), platforms=["linux/amd64"], compression={"code": "gzip"},
    ...     source_date_epoch=0, builder_version="0.1.0",
    ...     started_on=datetime(2025, 1, 1, tzinfo=UTC), finished_on=datetime(2025, 1, 1, tzinfo=UTC),
    ...     ci=ci_context_from_env({"GITLAB_CI": "true", "CI_JOB_URL": "https://gitlab.com/x/-/jobs/1"}),
    ... )
    >>> predicate["buildDefinition"]["buildType"]
    'https://ecr.waggle-sensor.org/buildtypes/push/v1'
    >>> predicate["runDetails"]["builder"]["id"]
    'https://ecr.waggle-sensor.org/builders/ecr-oci/gitlab-ci'
    >>> predicate["buildDefinition"]["resolvedDependencies"][0]["digest"]
    {'gitCommit': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}

Why: a signature says *who* vouches for an image; provenance says *how it was made*, so that anyone
can rebuild it (ecr-oci builds are reproducible: same source, base image digest, ecr.yaml,
``SOURCE_DATE_EPOCH`` and ecr-oci version give the same digests) and a policy can require, e.g., that
production images were built in CI from a clean commit. The predicate follows SLSA provenance v1
(https://slsa.dev/spec/v1.0/provenance); the meaning of our ``buildType``'s parameters is in
``docs/provenance.md``.

Everything is an explicit argument: :func:`build_provenance` is pure, and the library never reads
the environment (STYLE §8) — the CLI calls :func:`ci_context_from_env` with ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ecr_oci.bundle.spec import Source
from ecr_oci.digest import Digest
from ecr_oci.mediatypes import MediaType, PredicateType
from ecr_oci.reference import Reference

__all__ = [
    "BUILDER_ID",
    "BUILD_TYPE",
    "PREDICATE_TYPE",
    "CIContext",
    "build_provenance",
    "ci_context_from_env",
]

#: The predicate type of the attestation (in-toto ``predicateType``).
PREDICATE_TYPE = PredicateType.SLSA_PROVENANCE_V1.value
#: Our build type: ``ecr-oci push`` of a bundle directory (docs/provenance.md).
BUILD_TYPE = "https://ecr.waggle-sensor.org/buildtypes/push/v1"
#: ``runDetails.builder.id`` is this plus ``/<ci system>``, or ``/local`` outside CI.
BUILDER_ID = "https://ecr.waggle-sensor.org/builders/ecr-oci"


@dataclass(frozen=True)
class CIContext:
    """The CI run a push happens in: ``system`` names it; ``run_url`` links to the run's page."""

    system: str
    run_url: str | None = None
    #: Unique per attempt (GitHub re-runs keep the run URL); defaults to ``run_url``.
    invocation_id: str | None = None


def ci_context_from_env(environ: Mapping[str, str]) -> CIContext | None:
    """The CI context from the usual variables, ``None`` outside CI.

        >>> ci_context_from_env({"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com",
        ...     "GITHUB_REPOSITORY": "waggle-sensor/hello", "GITHUB_RUN_ID": "42"}).run_url
        'https://github.com/waggle-sensor/hello/actions/runs/42'
        >>> ci_context_from_env({"CI": "true"})
        CIContext(system='ci', run_url=None, invocation_id=None)
        >>> ci_context_from_env({}) is None
        True

    GitHub Actions (``GITHUB_ACTIONS``): ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/
    $GITHUB_RUN_ID``, the invocation id adding ``/attempts/$GITHUB_RUN_ATTEMPT`` as GitHub's own
    SLSA generator does. GitLab CI (``GITLAB_CI``): ``$CI_JOB_URL``. Any other CI that sets ``CI``
    (the de-facto convention) is ``ci`` without a URL.
    """
    if environ.get("GITHUB_ACTIONS") == "true":
        parts = [environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
        run_url = f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None
        attempt = environ.get("GITHUB_RUN_ATTEMPT")
        invocation = f"{run_url}/attempts/{attempt}" if run_url and attempt else run_url
        return CIContext("github-actions", run_url, invocation)
    if environ.get("GITLAB_CI") == "true":
        job_url = environ.get("CI_JOB_URL") or None
        return CIContext("gitlab-ci", job_url, job_url)
    if environ.get("CI", "").lower() in ("true", "1", "yes"):
        return CIContext("ci")
    return None


def build_provenance(
    *,
    source: Source | None,
    ecr_yaml_digest: Digest,
    base_image: Reference,
    base_digest: Digest,
    platforms: Sequence[str],
    compression: Mapping[str, str | None],
    source_date_epoch: int,
    builder_version: str,
    started_on: datetime,
    finished_on: datetime,
    ci: CIContext | None = None,
    bundle_path: str | None = None,
    bundle_digest: Digest | None = None,
    layers: Mapping[str, Digest] | None = None,
    invocation_id: str | None = None,
) -> dict[str, Any]:
    """The SLSA v1 provenance predicate of one push (a JSON object for :func:`attest_image`).

    - ``source``: ``metadata.source`` of the loaded spec (git URL, commit, ``dirty``);
      ``bundle_path``: the bundle directory inside that repository, when known.
    - ``ecr_yaml_digest``: sha256 of the ``ecr.yaml`` bytes; ``base_image``: ``runtime.base`` as
      written; ``base_digest``: the manifest or index digest it resolved to.
    - ``platforms``: the platforms built (``linux/amd64`` …); ``compression``: role → compression
      chosen for each layer (``gzip``, ``zstd``, ``None`` for a plain tar);
      ``source_date_epoch``: the timestamp given to every file and the image.
    - ``builder_version``: the ecr-oci version; ``ci``: from :func:`ci_context_from_env`.
    - ``started_on``/``finished_on``: timezone-aware times of the push; ``invocation_id``
      overrides the CI's.
    - ``bundle_digest`` and ``layers`` (role → blob digest) are recorded as byproducts, so a
      rebuild can be compared layer by layer.

    Raises ``ValueError`` for a naive datetime (a timestamp without a zone is ambiguous).
    """
    dependencies: list[dict[str, Any]] = []
    if source is not None and (source.url or source.commit):
        dependencies.append(_source_dependency(source))
    dependencies.append(
        {
            "name": "base-image",
            "uri": f"oci://{base_image.repository_url_part}"
            + (f":{base_image.tag}" if base_image.tag else ""),
            "digest": {base_digest.algorithm: base_digest.hex},
        }
    )
    spec_path = f"{bundle_path.strip('/')}/ecr.yaml" if bundle_path else "ecr.yaml"
    external: dict[str, Any] = {
        "spec": {"path": spec_path, "digest": {ecr_yaml_digest.algorithm: ecr_yaml_digest.hex}},
        "baseImage": str(base_image),
        "platforms": list(platforms),
        "sourceDateEpoch": source_date_epoch,
    }
    if bundle_path:
        external["bundlePath"] = bundle_path.strip("/")
    internal = {"compression": {role: value or "none" for role, value in sorted(compression.items())}}
    metadata: dict[str, Any] = {}
    invocation = invocation_id or (ci.invocation_id or ci.run_url if ci else None)
    if invocation:
        metadata["invocationId"] = invocation
    metadata["startedOn"] = _timestamp(started_on)
    metadata["finishedOn"] = _timestamp(finished_on)
    run_details: dict[str, Any] = {
        "builder": {
            "id": f"{BUILDER_ID}/{ci.system if ci else 'local'}",
            "version": {"ecr-oci": builder_version},
        },
        "metadata": metadata,
    }
    byproducts = _byproducts(bundle_digest, layers or {})
    if byproducts:
        run_details["byproducts"] = byproducts
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": run_details,
    }


def _source_dependency(source: Source) -> dict[str, Any]:
    """The git source as an in-toto ResourceDescriptor (``git+<url>``, digest ``gitCommit``)."""
    entry: dict[str, Any] = {"name": "source"}
    if source.url:
        entry["uri"] = f"git+{source.url}"
    if source.commit:
        entry["digest"] = {"gitCommit": source.commit}
    if source.dirty:
        # the tree had uncommitted changes: the commit alone does not rebuild this image
        entry["annotations"] = {"dirty": True}
    return entry


def _byproducts(bundle: Digest | None, layers: Mapping[str, Digest]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if bundle is not None:
        found.append(
            {
                "name": "bundle",
                "digest": {bundle.algorithm: bundle.hex},
                "mediaType": MediaType.OCI_MANIFEST.value,
            }
        )
    for role, digest in sorted(layers.items()):
        found.append({"name": f"layer/{role}", "digest": {digest.algorithm: digest.hex}})
    return found


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
