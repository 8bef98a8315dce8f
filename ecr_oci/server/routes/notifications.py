"""``POST /events``: the registry's notifications (REFERENCE.md "Notifications").

    $ curl -X POST http://127.0.0.1:8000/events -H 'Authorization: Bearer <secret>' \\
        -H 'Content-Type: application/vnd.docker.distribution.events.v1+json' -d '{"events": []}'
    {"received":0,"queued":0}

The registry sends the shared secret through ``notifications.endpoints[].headers``
(``Authorization: [Bearer <secret>]``); a missing or wrong one is a 401 (compared in constant
time). A body that is not the events envelope is a 400. The answer is a 202 as soon as the
events that count as activity or change the index are queued (``pending_event``, one insert, no
registry read); the indexing worker (``services.queue``) records and indexes them in batches
(docs/service.md, "Events → index"); while the registry or the database cannot be reached there,
they stay queued. Only a database that cannot be written makes this a 5xx (the
registry then redelivers, which is what we want).
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from ecr_oci.server.routes.deps import get_settings, require_bearer_secret
from ecr_oci.server.routes.errors import ErrorBody
from ecr_oci.server.services.activity import NotificationEnvelope, normalise_timestamps
from ecr_oci.server.services.errors import InvalidInputError
from ecr_oci.server.services.notifications import enqueue_events

__all__ = ["router"]

log = logging.getLogger("ecr_oci.server.notifications")
router = APIRouter(tags=["notifications"])

#: Largest body accepted; distribution sends one event (~1 KiB, more with includereferences).
MAX_BODY = 1 << 20


class EventsAccepted(BaseModel):
    received: int
    #: Events queued for the indexing worker: activity (pushes, pulls, deletes) and index changes.
    queued: int


def _check_secret(request: Request) -> None:
    require_bearer_secret(
        request, get_settings(request).notification_secret, "missing or wrong notification secret"
    )


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 413: {"model": ErrorBody}},
    summary="Receive registry notifications (shared secret as a bearer token)",
)
async def receive_events(request: Request) -> EventsAccepted:
    _check_secret(request)
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInputError(f"notification body over {MAX_BODY} bytes", code="TOO_LARGE")
    try:
        envelope = NotificationEnvelope.model_validate(normalise_timestamps(json.loads(body)))
    except (ValueError, ValidationError) as err:
        detail = err.errors()[0]["msg"] if isinstance(err, ValidationError) else "not JSON"
        raise InvalidInputError(f"malformed notification: {detail}", code="MALFORMED_NOTIFICATION") from None
    app = request.app
    queued = await run_in_threadpool(enqueue_events, envelope.events, app.state.write_sessions)
    if queued:
        app.state.event_queue.notify()
    return EventsAccepted(received=len(envelope.events), queued=queued)
