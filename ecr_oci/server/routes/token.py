"""``/token``: the registry's token server (distribution ``auth.token``; REFERENCE.md "Token auth").

    $ curl -u ana:PASSWORD 'http://127.0.0.1:8000/token?service=ecr-registry&scope=repository:waggle/hello:pull,push'
    {"token": "eyJ…", "access_token": "eyJ…", "expires_in": 300, "issued_at": "2026-11-24T22:00:00Z"}

What clients send: docker, podman and skopeo ``GET ?service=…&scope=…`` (several ``scope``
parameters or one space-separated; ``account=``) with basic auth when they have credentials;
containerd first ``POST``s a form (``grant_type=password``, ``username``, ``password``, ``service``,
``scope``). Both are answered here. Credentials that do not check out are a 401 (so ``docker
login`` reports them); no credentials is anonymous. The token holds, per requested scope, exactly
the actions the rules grant (``services.access``) — possibly none, and then the registry answers
the request with its own 401: a private bundle looks like a missing one.

Every request with credentials is audited as a ``login`` (ok or failed) and every token as a
``token`` entry with the granted scopes (``services.audit``; never the secret).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ecr_oci.server.routes.deps import basic_credentials
from ecr_oci.server.routes.errors import ErrorBody, error_response
from ecr_oci.server.services.access import ANONYMOUS, Identity, RuleSet
from ecr_oci.server.services.audit import AuditEntry
from ecr_oci.server.services.tokens import Scope, parse_scopes

__all__ = ["router"]

router = APIRouter(tags=["token"])

#: Most scopes honoured in one request (clients ask one to three).
MAX_SCOPES = 32


class TokenResponse(BaseModel):
    token: str
    access_token: str
    expires_in: int
    issued_at: str


def _access(rules: RuleSet, identity: Identity, scopes: list[Scope]) -> list[dict[str, Any]]:
    access: list[dict[str, Any]] = []
    for scope in scopes[:MAX_SCOPES]:
        if scope.type == "repository":
            actions = rules.registry_actions(identity, scope.name, scope.actions)
        elif scope.type == "registry" and scope.name == "catalog" and identity.is_admin:
            actions = set(scope.actions) & {"*"}
        else:
            actions = set()
        if actions:
            access.append({"type": scope.type, "name": scope.name, "actions": sorted(actions)})
    return access


def _issue(
    request: Request, credentials: tuple[str, str] | None, scope_values: list[str], service: str
) -> Any:
    app = request.app
    settings = app.state.settings
    source = request.client.host if request.client else None
    if service and service != settings.token_service:
        return error_response(400, "BAD_REQUEST", f"unknown service {service[:100]!r}")
    identity = ANONYMOUS
    found: Identity | None = None
    # one session for the credentials and the rules (a session per query costs more than the query)
    with app.state.sessions() as session:
        if credentials is not None:
            found = app.state.authenticator.authenticate(session, *credentials)
        rules = app.state.rules.get(session)
    if credentials is not None:
        name = credentials[0]
        app.state.audit.add(
            AuditEntry(
                actor=name[:128], action="login", outcome="ok" if found else "failed", source_addr=source
            )
        )
        if found is None:
            return error_response(
                401,
                "UNAUTHORIZED",
                "wrong name, password or token",
                headers={"WWW-Authenticate": 'Basic realm="ecr-oci"'},
            )
        identity = found
    scopes = parse_scopes(scope_values)
    access = _access(rules, identity, scopes)
    body = app.state.token_issuer.issue(identity.name or "", access)
    app.state.audit.add(
        AuditEntry(
            actor=identity.name,
            action="token",
            target=" ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access) or None,
            source_addr=source,
            detail={"asked": [f"{s.type}:{s.name}:{','.join(s.actions)}" for s in scopes[:MAX_SCOPES]]},
        )
    )
    return JSONResponse(body)


def _answerable_inline(request: Request, credentials: tuple[str, str] | None) -> bool:
    """Whether answering needs no database read and no password hash: the rules are fresh in memory
    and the caller is anonymous or logged in a moment ago. Such requests are answered on the event
    loop (a thread hand-off costs more than the answer); the others go to the thread pool, where
    a read or an argon2 check cannot hold up other requests."""
    state = request.app.state
    if state.rules.fresh() is None:
        return False
    return credentials is None or state.authenticator.cached(*credentials) is not None


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": TokenResponse},
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
}


def _enabled(request: Request) -> JSONResponse | None:
    if not request.app.state.settings.access_control:
        return error_response(404, "NOT_FOUND", "access control is off: this service issues no tokens")
    return None


@router.get("/token", responses=_RESPONSES, summary="Registry token (docker, podman, skopeo)")
async def token_get(request: Request) -> Any:
    off = _enabled(request)
    if off is not None:
        return off
    credentials = basic_credentials(request.headers.get("authorization", ""))
    if request.headers.get("authorization") and credentials is None:
        return error_response(401, "UNAUTHORIZED", "only basic credentials are accepted here")
    params = request.query_params
    arguments = (request, credentials, params.getlist("scope"), params.get("service", ""))
    if _answerable_inline(request, credentials):
        return _issue(*arguments)
    return await run_in_threadpool(_issue, *arguments)


@router.post("/token", responses=_RESPONSES, summary="Registry token (containerd's OAuth2 password form)")
async def token_post(request: Request) -> Any:
    off = _enabled(request)
    if off is not None:
        return off
    form = await request.form()
    grant_type = str(form.get("grant_type", ""))
    if grant_type != "password":
        return error_response(400, "BAD_REQUEST", "grant_type must be password")
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    if "\x00" in username or "\x00" in password:
        return error_response(400, "BAD_REQUEST", "a NUL character is not allowed in credentials")
    credentials = (username, password) if username else None
    scopes = [str(v) for v in form.getlist("scope")]
    return await run_in_threadpool(_issue, request, credentials, scopes, str(form.get("service", "")))
