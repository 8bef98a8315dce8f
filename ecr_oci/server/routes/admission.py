"""``POST /admission/validate``: the Kubernetes validating admission webhook for Pods (issue 5).

    $ curl -s -X POST -H 'Content-Type: application/json' --data @review.json \
        http://127.0.0.1:8000/admission/validate
    {"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"…","allowed":false,
     "status":{"code":403,"message":"container 'app' (…): not signed by a trusted key (no-signature): …"}}}

The caller must send ``Authorization: Bearer <admission_token>`` (the API server does, from the
kubeconfig named in its ``AdmissionConfiguration``): the webhook reads private bundles with the
service's own access, so it answers nobody else. Denials never carry digests, and an unsigned image
reads the same as a missing one.

The body is read raw (not as a FastAPI model) so that a malformed review still gets an
``AdmissionReview`` denial whenever it carries a ``request.uid``; only a body with nothing to answer
to is a 400 in the service's JSON error format. The decision is
:class:`~ecr_oci.server.services.admission.AdmissionController`'s, run in a worker thread (it
reads the registry with a blocking client). ``policies/admission/validating-webhook.yaml`` is a
sample ``ValidatingWebhookConfiguration`` pointing at this path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ecr_oci.server.routes.deps import get_settings, require_bearer_secret
from ecr_oci.server.routes.errors import ErrorBody
from ecr_oci.server.services.admission import AdmissionController, AdmissionReview, AdmissionReviewAnswer

__all__ = ["router"]

router = APIRouter(tags=["admission"])

_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": AdmissionReview.model_json_schema()}},
    }
}


def _check_caller(request: Request) -> None:
    """The API server's bearer token (``admission_token``), compared in constant time."""
    require_bearer_secret(
        request,
        get_settings(request).admission_token,
        "the webhook needs the API server's bearer token (admission_token)",
    )


def get_admission(request: Request) -> AdmissionController:
    controller: AdmissionController = request.app.state.admission
    return controller


@router.post(
    "/admission/validate",
    response_model=AdmissionReviewAnswer,
    response_model_exclude_none=True,
    summary="Kubernetes validating admission webhook (AdmissionReview v1, Pods)",
    openapi_extra=_REQUEST_BODY,
    responses={
        200: {"description": "the AdmissionReview answer: allowed, or denied with a reason per image"},
        400: {"model": ErrorBody, "description": "not JSON, or no request.uid to answer to"},
        401: {"model": ErrorBody, "description": "no or wrong bearer token (admission_token)"},
    },
)
async def validate(request: Request) -> JSONResponse:
    _check_caller(request)
    body = await request.body()
    answer = await run_in_threadpool(get_admission(request).review, body)
    return JSONResponse(answer.model_dump(mode="json", exclude_none=True))
