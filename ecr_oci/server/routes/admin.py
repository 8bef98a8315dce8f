"""``/api/v1/admin``: principals, tokens, teams, namespaces, visibility, grants, the audit log;
``/api/v1/me``: who the caller is (docs/access.md).

    $ curl -u admin:PASSWORD -X POST http://127.0.0.1:8000/api/v1/admin/users \\
        -H 'content-type: application/json' -d '{"name": "ana", "password": "correct horse"}'
    $ curl -u ana:PASSWORD http://127.0.0.1:8000/api/v1/me

HTTP in and out only (STYLE.md §9): each handler checks who calls, runs one function of
:mod:`ecr_oci.server.services.accounts` in a write transaction (the change, its rules-version bump
and its audit record commit together) and returns a pydantic model. Anonymous callers get 401 on
every admin route; authenticated ones 403 where :func:`accounts.check_manage` says no: principals,
teams, namespaces and the audit log are for admins, grants and visibility also for a namespace's
owner (or whoever has ``admin`` on it), tokens also for a user itself and for the admins of every
namespace a robot is scoped to. Passwords and token secrets never appear in an answer; a new
token's plaintext is in the answer that created it, once.

``GET /v2/`` answers the distribution API's base check (401 with a ``Basic`` challenge, 200 with
good credentials), so that ``ecr-oci login SERVICE`` checks and stores credentials for the service
under its ``host:port``, where ``ecr-oci admin`` reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from ecr_oci.server.db.accounts import AuditRecord, NamespaceRow, Principal
from ecr_oci.server.db.models import aware
from ecr_oci.server.routes.deps import get_identity
from ecr_oci.server.routes.errors import ErrorBody
from ecr_oci.server.services import accounts
from ecr_oci.server.services.access import Identity, identities_of, identity_of
from ecr_oci.server.services.errors import ForbiddenError, UnauthorizedError

__all__ = [
    "AuditPageOut",
    "AuditRecordOut",
    "GrantIn",
    "GrantOut",
    "MeOut",
    "NamespaceIn",
    "NamespaceOut",
    "PrincipalOut",
    "TeamOut",
    "TokenCreated",
    "TokenOut",
    "router",
]

router = APIRouter(tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request"},
    401: {"model": ErrorBody, "description": "no or wrong credentials"},
    403: {"model": ErrorBody, "description": "not allowed for this caller"},
    404: {"model": ErrorBody, "description": "no such principal, team, namespace or grant"},
    409: {"model": ErrorBody, "description": "the name is taken"},
}
Name = Annotated[str, Path(min_length=1, max_length=128)]
Visibility = Literal["public", "private"]
Level = Literal["pull", "push", "admin"]


# ---------------------------------------------------------------------------- models


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class UserIn(_In):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    admin: bool = False


class PasswordIn(_In):
    password: str = Field(max_length=1024)


class RobotIn(_In):
    name: str = Field(max_length=64)
    namespaces: list[str] = Field(min_length=1, max_length=100)
    expires_at: datetime | None = None


class NodeIn(_In):
    name: str = Field(max_length=64)
    #: PEM public key (EC P-256 or Ed25519): the node may log in with assertions signed by it.
    public_key: str | None = Field(default=None, max_length=4096)


class TokenIn(_In):
    name: str = Field(default="", max_length=128)
    expires_at: datetime | None = None


class TeamIn(_In):
    name: str = Field(max_length=64)


class NamespaceIn(_In):
    name: str = Field(max_length=255)
    owner: str | None = Field(default=None, max_length=128)
    visibility: Visibility = "private"


class VisibilityIn(_In):
    target: str = Field(max_length=255, description="NAMESPACE or NAMESPACE/NAME")
    visibility: Visibility | None = Field(description="null: clear a bundle's override")


class GrantIn(_In):
    target: str = Field(max_length=255, description="NAMESPACE or NAMESPACE/NAME")
    action: Level
    principal: str | None = Field(default=None, max_length=128)
    team: str | None = Field(default=None, max_length=128)


class PrincipalOut(_Out):
    name: str
    kind: str
    admin: bool
    disabled: bool
    expires_at: datetime | None
    created_at: datetime
    #: Robots: the namespaces their grants count in.
    scope: list[str] | None = None
    teams: list[str] = []


class TokenOut(_Out):
    id: int
    name: str
    expires_at: datetime | None
    created_at: datetime


class TokenCreated(_Out):
    """The only answer that holds a token's plaintext."""

    token: str
    id: int
    principal: str
    name: str
    expires_at: datetime | None


class TeamOut(_Out):
    name: str
    members: list[str]


class NamespaceOut(_Out):
    name: str
    owner: str | None
    visibility: Visibility


class GrantOut(_Out):
    target: str
    action: str
    principal: str | None
    team: str | None


class AuditRecordOut(_Out):
    id: int
    time: datetime
    actor: str | None
    action: str
    outcome: str
    target: str | None
    source_addr: str | None
    detail: dict[str, Any]


class AuditPageOut(_Out):
    items: list[AuditRecordOut]
    next_cursor: str | None


class MeOut(_Out):
    name: str | None
    kind: str
    admin: bool
    teams: list[str]
    #: Namespace → the caller's level on it as a whole (owner: admin).
    namespaces: dict[str, str]


# ---------------------------------------------------------------------------- helpers


def _caller(request: Request) -> Identity:
    identity = get_identity(request)
    if identity.anonymous:
        raise UnauthorizedError("log in first (ecr-oci login)")
    return identity


Caller = Annotated[Identity, Depends(_caller)]


@contextmanager
def _write(request: Request) -> Iterator[Session]:
    """One write transaction: committed when the block ends, rolled back when it raises; then the
    rules cache of this process is dropped, so the change applies to the very next request."""
    try:
        with request.app.state.write_sessions.begin() as session:
            yield session
    finally:
        request.app.state.rules.invalidate()


def _principal_out(session: Session, principal: Principal, identity: Identity | None = None) -> PrincipalOut:
    identity = identity if identity is not None else identity_of(session, principal)
    return PrincipalOut(
        name=principal.name,
        kind=principal.kind,
        admin=principal.is_admin,
        disabled=principal.disabled,
        expires_at=aware(principal.expires_at),
        created_at=aware(principal.created_at) or principal.created_at,
        scope=sorted(identity.scope) if identity.scope is not None else None,
        teams=sorted(identity.teams),
    )


def _namespace_out(row: NamespaceRow, owner: str | None) -> NamespaceOut:
    visibility: Visibility = "public" if row.visibility == "public" else "private"
    return NamespaceOut(name=row.name, owner=owner, visibility=visibility)


def _audit_out(record: AuditRecord) -> AuditRecordOut:
    return AuditRecordOut(
        id=record.id,
        time=aware(record.time) or record.time,
        actor=record.actor,
        action=record.action,
        outcome=record.outcome,
        target=record.target,
        source_addr=record.source_addr,
        detail=record.detail or {},
    )


def _namespace_of(target: str) -> str:
    return accounts.parse_target(target).namespace


# ---------------------------------------------------------------------------- me


@router.get("/api/v1/me", response_model=MeOut, responses={401: _ERRORS[401]}, summary="Who am I")
def me(request: Request) -> MeOut:
    """The caller, its teams, and the namespaces it owns or has a namespace-wide grant on
    (anonymous: ``name`` null)."""
    identity = get_identity(request)
    if identity.anonymous:
        return MeOut(name=None, kind="anonymous", admin=False, teams=[], namespaces={})
    with request.app.state.sessions() as session:
        namespaces = accounts.namespaces_of(session, identity)
    return MeOut(
        name=identity.name,
        kind=identity.kind,
        admin=identity.is_admin,
        teams=sorted(identity.teams),
        namespaces=namespaces,
    )


@router.get("/v2/", include_in_schema=False)
def login_check(request: Request) -> Response:
    """The distribution API's base check, so that ``ecr-oci login SERVICE`` and ``docker login``
    can check and store credentials for the service itself (the admin CLI reads them by the
    service's ``host:port``): anonymous → 401 with a ``Basic`` challenge (the client retries with
    the credentials), good credentials → 200, wrong ones → 401 (from :func:`get_identity`)."""
    if get_identity(request).anonymous:
        return Response(
            '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": 'Basic realm="ecr-service"'},
        )
    return Response("{}", media_type="application/json")


# ---------------------------------------------------------------------------- principals


@router.post("/api/v1/admin/users", response_model=PrincipalOut, status_code=201, responses=_ERRORS)
def create_user(body: UserIn, request: Request, caller: Caller) -> PrincipalOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        user = accounts.create_user(session, body.name, body.password, admin=body.admin, actor=caller.name)
        return _principal_out(session, user)


@router.post("/api/v1/admin/robots", response_model=PrincipalOut, status_code=201, responses=_ERRORS)
def create_robot(body: RobotIn, request: Request, caller: Caller) -> PrincipalOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        robot = accounts.create_robot(
            session, body.name, namespaces=body.namespaces, expires_at=body.expires_at, actor=caller.name
        )
        return _principal_out(session, robot)


@router.post("/api/v1/admin/nodes", response_model=PrincipalOut, status_code=201, responses=_ERRORS)
def create_node(body: NodeIn, request: Request, caller: Caller) -> PrincipalOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        return _principal_out(
            session, accounts.create_node(session, body.name, public_key=body.public_key, actor=caller.name)
        )


@router.get("/api/v1/admin/principals", response_model=list[PrincipalOut], responses=_ERRORS)
def list_principals(
    request: Request,
    caller: Caller,
    kind: Annotated[Literal["user", "robot", "node"] | None, Query()] = None,
) -> list[PrincipalOut]:
    with request.app.state.sessions() as session:
        accounts.check_manage(session, caller)
        principals = accounts.list_principals(session, kind=kind)
        identities = identities_of(session, principals)
        return [_principal_out(session, p, identities[p.id]) for p in principals]


@router.get("/api/v1/admin/principals/{name}", response_model=PrincipalOut, responses=_ERRORS)
def get_principal(name: Name, request: Request, caller: Caller) -> PrincipalOut:
    with request.app.state.sessions() as session:
        accounts.check_manage(session, caller)
        return _principal_out(session, accounts.get_principal(session, name))


@router.put("/api/v1/admin/principals/{name}/password", status_code=204, responses=_ERRORS)
def set_password(name: Name, body: PasswordIn, request: Request, caller: Caller) -> Response:
    """A new password: admins for anyone, a user for itself."""
    with _write(request) as session:
        if name != caller.name:
            accounts.check_manage(session, caller)
        elif caller.method != "password":
            # a leaked token must not become the account: changing one's password needs it
            raise ForbiddenError("not allowed: changing your password needs a password login, not a token")
        accounts.set_password(session, name, body.password, actor=caller.name)
    return Response(status_code=204)


@router.post("/api/v1/admin/principals/{name}/disable", response_model=PrincipalOut, responses=_ERRORS)
def disable(name: Name, request: Request, caller: Caller) -> PrincipalOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        return _principal_out(session, accounts.disable(session, name, actor=caller.name))


@router.post("/api/v1/admin/principals/{name}/enable", response_model=PrincipalOut, responses=_ERRORS)
def enable(name: Name, request: Request, caller: Caller) -> PrincipalOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        return _principal_out(session, accounts.enable(session, name, actor=caller.name))


@router.delete("/api/v1/admin/principals/{name}", status_code=204, responses=_ERRORS)
def delete_principal(name: Name, request: Request, caller: Caller) -> Response:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        accounts.delete_principal(session, name, actor=caller.name)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- tokens


@router.post(
    "/api/v1/admin/principals/{name}/tokens", response_model=TokenCreated, status_code=201, responses=_ERRORS
)
def create_token(name: Name, body: TokenIn, request: Request, caller: Caller) -> TokenCreated:
    """A new API token; its plaintext is in this answer only."""
    with _write(request) as session:
        accounts.check_manage(session, caller, token_for=name)
        expires_at = accounts.token_lifetime(caller, body.expires_at)
        token_id, plaintext = accounts.create_token(
            session, name, name=body.name, expires_at=expires_at, actor=caller.name
        )
    return TokenCreated(
        token=plaintext,
        id=token_id,
        principal=name,
        name=body.name,
        expires_at=aware(expires_at),
    )


@router.get("/api/v1/admin/principals/{name}/tokens", response_model=list[TokenOut], responses=_ERRORS)
def list_tokens(name: Name, request: Request, caller: Caller) -> list[TokenOut]:
    with request.app.state.sessions() as session:
        accounts.check_manage(session, caller, token_for=name)
        return [
            TokenOut(
                id=t.id,
                name=t.name,
                expires_at=aware(t.expires_at),
                created_at=aware(t.created_at) or t.created_at,
            )
            for t in accounts.list_tokens(session, name)
        ]


@router.delete("/api/v1/admin/principals/{name}/tokens/{token_id}", status_code=204, responses=_ERRORS)
def revoke_token(
    name: Name, token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], request: Request, caller: Caller
) -> Response:
    with _write(request) as session:
        accounts.check_manage(session, caller, token_for=name)
        accounts.revoke_token(session, name, token_id, actor=caller.name)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- teams


@router.post("/api/v1/admin/teams", response_model=TeamOut, status_code=201, responses=_ERRORS)
def create_team(body: TeamIn, request: Request, caller: Caller) -> TeamOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        team = accounts.create_team(session, body.name, actor=caller.name)
        return TeamOut(name=team.name, members=[])


@router.get("/api/v1/admin/teams", response_model=list[TeamOut], responses=_ERRORS)
def list_teams(request: Request, caller: Caller) -> list[TeamOut]:
    with request.app.state.sessions() as session:
        accounts.check_manage(session, caller)
        teams = accounts.list_teams(session)
        members = accounts.members_of_teams(session, teams)
        return [TeamOut(name=t.name, members=members[t.id]) for t in teams]


@router.delete("/api/v1/admin/teams/{name}", status_code=204, responses=_ERRORS)
def delete_team(name: Name, request: Request, caller: Caller) -> Response:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        accounts.delete_team(session, name, actor=caller.name)
    return Response(status_code=204)


@router.put("/api/v1/admin/teams/{name}/members/{principal}", response_model=TeamOut, responses=_ERRORS)
def add_member(name: Name, principal: Name, request: Request, caller: Caller) -> TeamOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        accounts.add_member(session, name, principal, actor=caller.name)
        return TeamOut(name=name, members=accounts.team_members(session, name))


@router.delete("/api/v1/admin/teams/{name}/members/{principal}", response_model=TeamOut, responses=_ERRORS)
def remove_member(name: Name, principal: Name, request: Request, caller: Caller) -> TeamOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        accounts.remove_member(session, name, principal, actor=caller.name)
        return TeamOut(name=name, members=accounts.team_members(session, name))


# ---------------------------------------------------------------------------- namespaces, visibility


@router.post("/api/v1/admin/namespaces", response_model=NamespaceOut, status_code=201, responses=_ERRORS)
def create_namespace(body: NamespaceIn, request: Request, caller: Caller) -> NamespaceOut:
    with _write(request) as session:
        accounts.check_manage(session, caller)
        row = accounts.create_namespace(
            session, body.name, owner=body.owner, visibility=body.visibility, actor=caller.name
        )
        return _namespace_out(row, body.owner)


@router.get("/api/v1/admin/namespaces", response_model=list[NamespaceOut], responses=_ERRORS)
def list_namespaces(request: Request, caller: Caller) -> list[NamespaceOut]:
    """Every namespace (admins), or those the caller may manage."""
    with request.app.state.sessions() as session:
        rows = accounts.list_namespaces(session)
        if not caller.is_admin:
            mine = {ns for ns, level in accounts.namespaces_of(session, caller).items() if level == "admin"}
            rows = [(row, owner) for row, owner in rows if row.name in mine]
        return [_namespace_out(row, owner) for row, owner in rows]


@router.put("/api/v1/admin/visibility", status_code=204, responses=_ERRORS)
def set_visibility(body: VisibilityIn, request: Request, caller: Caller) -> Response:
    with _write(request) as session:
        accounts.check_manage(session, caller, namespace=_namespace_of(body.target))
        accounts.set_visibility(session, body.target, body.visibility, actor=caller.name)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- grants


@router.post("/api/v1/admin/grants", response_model=GrantOut, responses=_ERRORS)
def grant(body: GrantIn, request: Request, caller: Caller) -> GrantOut:
    """Grant (or change) ``action`` on ``target`` to exactly one of ``principal`` or ``team``."""
    with _write(request) as session:
        accounts.check_manage(session, caller, namespace=_namespace_of(body.target))
        accounts.grant(
            session, body.target, body.action, principal=body.principal, team=body.team, actor=caller.name
        )
    return GrantOut(target=body.target, action=body.action, principal=body.principal, team=body.team)


@router.delete("/api/v1/admin/grants", status_code=204, responses=_ERRORS)
def revoke(
    request: Request,
    caller: Caller,
    target: Annotated[str, Query(min_length=1, max_length=255)],
    principal: Annotated[str | None, Query(max_length=128)] = None,
    team: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    with _write(request) as session:
        accounts.check_manage(session, caller, namespace=_namespace_of(target))
        accounts.revoke(session, target, principal=principal, team=team, actor=caller.name)
    return Response(status_code=204)


@router.get("/api/v1/admin/grants", response_model=list[GrantOut], responses=_ERRORS)
def list_grants(
    request: Request,
    caller: Caller,
    namespace: Annotated[str | None, Query(max_length=255)] = None,
    principal: Annotated[str | None, Query(max_length=128)] = None,
) -> list[GrantOut]:
    """Grants (admins: all; a namespace's admins: pass ``namespace``)."""
    with request.app.state.sessions() as session:
        accounts.check_manage(session, caller, namespace=namespace)
        return [
            GrantOut(target=g.target, action=g.action, principal=g.principal, team=g.team)
            for g in accounts.list_grants(session, namespace=namespace, principal=principal)
        ]


# ---------------------------------------------------------------------------- audit


@router.get("/api/v1/admin/audit", response_model=AuditPageOut, responses=_ERRORS, summary="The audit log")
def audit(
    request: Request,
    caller: Caller,
    action: Annotated[str | None, Query(max_length=64, description="e.g. login, grant, grant.add")] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=accounts.MAX_AUDIT_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> AuditPageOut:
    """Audit records newest first, one page at a time (follow ``next_cursor``); admins only."""
    with request.app.state.sessions() as session:
        accounts.check_manage(session, caller)
    request.app.state.audit.flush()  # the token endpoint's queued entries, so the answer is current
    with request.app.state.sessions() as session:
        page = accounts.audit_records(
            session, action=action, actor=actor, since=since, limit=limit, cursor=cursor
        )
        return AuditPageOut(items=[_audit_out(r) for r in page.records], next_cursor=page.next_cursor)
