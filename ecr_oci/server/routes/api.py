"""``/api/v1``: search, bundle and version detail, referrers, activity (docs/service.md).

    $ curl 'http://127.0.0.1:8000/api/v1/search?q=sensor&platform=linux/arm64&limit=5'

HTTP in and out only (STYLE.md §9): each handler checks its parameters' shape (FastAPI: a
malformed one is a 400 JSON error from ``routes.errors``), calls one function of
:mod:`ecr_oci.server.services.search` with the caller's :class:`Visibility`, and returns its
pydantic model. Error statuses are documented with ``routes.errors.ErrorBody`` so that
``/openapi.json`` describes every answer a client can get.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.orm import Session

from ecr_oci.server.routes.deps import get_session, get_visibility, sees_who
from ecr_oci.server.routes.errors import ErrorBody
from ecr_oci.server.schemas import (
    ActivitySummary,
    BundleDetail,
    BundleProfiles,
    ReferrerList,
    SearchPage,
    VersionDetail,
)
from ecr_oci.server.services import search as service
from ecr_oci.server.services.visibility import Visibility

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["search"])

DbSession = Annotated[Session, Depends(get_session)]
Visible = Annotated[Visibility, Depends(get_visibility)]
#: Path segments: a repository component (distribution-spec allows a-z0-9 and . _ -).
Namespace = Annotated[str, Path(min_length=1, max_length=255, description="the bundle's namespace")]
Name = Annotated[str, Path(min_length=1, max_length=255, description="the bundle's name")]
_FILTER = {"max_length": 255}

_BAD: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "malformed parameter"}}
_MISSING: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such bundle (or not visible to the caller)"}
}


@router.get("/search", response_model=SearchPage, responses=_BAD, summary="Search bundle versions")
def search(
    session: DbSession,
    visible: Visible,
    q: Annotated[
        str | None,
        Query(
            max_length=service.MAX_QUERY_LENGTH,
            description="words that must all occur (name, description, "
            "keywords, authors); punctuation is ignored",
        ),
    ] = None,
    namespace: Annotated[str | None, Query(**_FILTER)] = None,
    keyword: Annotated[str | None, Query(**_FILTER)] = None,
    license: Annotated[str | None, Query(**_FILTER, description="SPDX expression, e.g. MIT")] = None,
    platform: Annotated[str | None, Query(**_FILTER, description="os/arch[/variant]")] = None,
    requirement: Annotated[str | None, Query(**_FILTER, description="e.g. pytorch")] = None,
    signed_by: Annotated[
        str | None, Query(max_length=80, description="hex SHA-256 of the signer's public key")
    ] = None,
    device: Annotated[
        str | None, Query(**_FILTER, description="only versions profiled on this device (its name)")
    ] = None,
    max_rss: Annotated[
        str | None, Query(max_length=40, description="peak RSS at most this: bytes, or e.g. 2GiB")
    ] = None,
    max_metric: Annotated[
        list[str] | None,
        Query(
            max_length=200,
            description="METRIC:STAT<NUMBER (STAT p50|p95|p99; < or <=), e.g. inference_ms:p95<200; "
            "repeatable, all must hold on one device",
        ),
    ] = None,
    sort: Annotated[
        str,
        Query(
            max_length=200,
            description="relevance, name, created, or metric:METRIC:STAT (ascending, best device)",
        ),
    ] = "relevance",
    cursor: Annotated[
        str | None, Query(max_length=2000, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = service.DEFAULT_LIMIT,
) -> SearchPage:
    """Versions matching the text and every filter, one page at a time (follow ``next_cursor``)."""
    filters = service.SearchFilters(
        namespace=namespace,
        keyword=keyword,
        license=license,
        platform=platform,
        requirement=requirement,
        signed_by=signed_by,
        device=device,
        max_rss=max_rss,
        max_metric=tuple(max_metric or ()),
    )
    query = service.SearchQuery(text=q, filters=filters, sort=sort, cursor=cursor, limit=limit)
    return service.search(session, query, visible=visible)


@router.get(
    "/bundles/{namespace}/{name}",
    response_model=BundleDetail,
    responses=_BAD | _MISSING,
    summary="A bundle and its versions",
)
def bundle(namespace: Namespace, name: Name, session: DbSession, visible: Visible) -> BundleDetail:
    return service.bundle_detail(session, namespace, name, visible=visible)


@router.get(
    "/bundles/{namespace}/{name}/versions/{version}",
    response_model=VersionDetail,
    responses=_BAD | _MISSING,
    summary="One version: layers, platforms, referrers, signatures",
)
def version(
    namespace: Namespace,
    name: Name,
    version: Annotated[str, Path(min_length=1, max_length=128)],
    session: DbSession,
    visible: Visible,
) -> VersionDetail:
    return service.version_detail(session, namespace, name, version, visible=visible)


@router.get(
    "/bundles/{namespace}/{name}/profiles",
    response_model=BundleProfiles,
    responses=_BAD | _MISSING,
    summary="Declared and measured profiles per version, and each device's history across versions",
)
def profiles(namespace: Namespace, name: Name, session: DbSession, visible: Visible) -> BundleProfiles:
    return service.bundle_profiles(session, namespace, name, visible=visible)


@router.get(
    "/bundles/{namespace}/{name}/activity",
    response_model=ActivitySummary,
    responses=_BAD | _MISSING,
    summary="Pull counts per version and recent events",
)
def activity(
    namespace: Namespace, name: Name, session: DbSession, visible: Visible, request: Request
) -> ActivitySummary:
    """Actors, source addresses and user agents only for the bundle's admins (else null)."""
    show_who = sees_who(session, request, namespace, name)
    return service.activity(session, namespace, name, visible=visible, show_who=show_who)


@router.get(
    "/referrers/{namespace}/{name}/{digest}",
    response_model=ReferrerList,
    responses=_BAD | _MISSING,
    summary="Referrers of a digest (signatures, bundle, profiles)",
)
def referrers(
    namespace: Namespace,
    name: Name,
    digest: Annotated[str, Path(max_length=200, description="sha256:<64 hex>")],
    session: DbSession,
    visible: Visible,
    artifact_type: Annotated[str | None, Query(alias="artifactType", **_FILTER)] = None,
) -> ReferrerList:
    return service.referrers(
        session, f"{namespace}/{name}", digest, visible=visible, artifact_type=artifact_type
    )
