"""``GET /v2/<name>/referrers/<digest>``: the OCI referrers API, served from the index.

    $ curl -H 'Accept: application/vnd.oci.image.index.v1+json' \
        http://127.0.0.1:8000/v2/waggle/hello-sensor/referrers/sha256:…

distribution 2.8 has no referrers API (REFERENCE.md); behind a front proxy that sends this one
path to the service (nginx snippet in docs/service.md), OCI clients get the API from the index.
Answers follow distribution-spec §"Listing Referrers": an image index (200, also when there are
none), ``OCI-Filters-Applied: artifactType`` when ``?artifactType=`` filtered it, and errors in the
distribution format ``{"errors": [{"code": "DIGEST_INVALID", ...}]}`` that OCI clients parse —
not the ``/api/v1`` error format.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from ecr_oci.mediatypes import MediaType
from ecr_oci.server.routes.deps import get_session, get_visibility
from ecr_oci.server.schemas import DistributionErrorItem, DistributionErrors, OciIndex
from ecr_oci.server.services import search as service
from ecr_oci.server.services.errors import InvalidInputError, NotFoundError
from ecr_oci.server.services.visibility import Visibility

__all__ = ["router"]

router = APIRouter(tags=["oci"])

_INDEX_TYPE = str(MediaType.OCI_INDEX)
_ERROR: dict[str, Any] = {"application/json": {"schema": DistributionErrors.model_json_schema()}}


class _OciIndexResponse(JSONResponse):
    media_type = _INDEX_TYPE


def _distribution_error(status: int, code: str, message: str) -> JSONResponse:
    body = DistributionErrors(errors=[DistributionErrorItem(code=code, message=message)])
    return JSONResponse(body.model_dump(), status_code=status)


@router.get(
    "/v2/{name:path}/referrers/{digest}",
    response_model=OciIndex,
    response_model_exclude_none=True,
    response_class=_OciIndexResponse,
    summary="OCI referrers API (distribution-spec 1.1) from the index",
    responses={
        200: {"content": {_INDEX_TYPE: {}}, "description": "image index of the referrers' descriptors"},
        400: {"content": _ERROR, "description": "DIGEST_INVALID"},
        404: {"content": _ERROR, "description": "NAME_UNKNOWN: no such repository (or not visible)"},
    },
)
def list_referrers(
    name: str,
    digest: str,
    session: Annotated[Session, Depends(get_session)],
    visible: Annotated[Visibility, Depends(get_visibility)],
    artifact_type: Annotated[str | None, Query(alias="artifactType", max_length=255)] = None,
) -> Response:
    try:
        found = service.referrers(session, name, digest, visible=visible, artifact_type=artifact_type)
    except InvalidInputError as err:
        return _distribution_error(400, "DIGEST_INVALID", str(err))
    except NotFoundError:
        return _distribution_error(404, "NAME_UNKNOWN", "repository name not known to registry")
    index = service.oci_referrers_index(found)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
    return _OciIndexResponse(index.model_dump(exclude_none=True), headers=headers)
