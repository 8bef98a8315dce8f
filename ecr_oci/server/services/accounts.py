"""Managing who may do what: principals, tokens, teams, namespaces, visibility, grants (issue 5).

    >>> from ecr_oci.server.db.engine import make_engine, session_factory    # doctest: +SKIP
    >>> with session_factory(engine, write=True).begin() as session:       # doctest: +SKIP
    ...     create_user(session, "ana", "correct horse", actor="admin")
    ...     create_namespace(session, "waggle", owner="ana", actor="admin")
    ...     grant(session, "waggle/hello", "push", principal="ci-bot", actor="ana")

No HTTP here (STYLE.md §9): ``routes.admin`` and ``ecr-oci admin bootstrap`` call these. Every
function takes the caller's :class:`Session` and leaves the commit to it, so that a change, its
``rules_version`` bump (:func:`~ecr_oci.server.services.access.bump_rules_version`: every replica's
rule cache reloads on its next request) and its audit record (:func:`audit_now`) commit together or
not at all. ``actor`` is who asked (the audit entry's actor); secrets never reach an entry.

Who may change what (:func:`check_manage`): an admin anything; a namespace's owner, or a principal
with the ``admin`` level on the namespace (``RuleSet.level``), may grant, revoke and set the
visibility inside it and create tokens for robots scoped to it; every user may create tokens for
itself. Everything else (principals, teams, namespaces) is for admins; ``routes.admin`` checks it.

Raises :class:`InvalidInputError` (bad name, short password, unknown action, robot granted outside
its scope), :class:`ConflictError` (name taken), :class:`NotFoundError` (no such principal, team,
namespace or grant) and :class:`ForbiddenError` (:func:`check_manage`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from ecr_oci.node_identity import check_public_key
from ecr_oci.server.db.accounts import (
    AccessGrant,
    ApiToken,
    AuditRecord,
    BundleVisibility,
    NamespaceRow,
    Principal,
    RobotScope,
    Team,
    TeamMember,
)
from ecr_oci.server.db.models import aware
from ecr_oci.server.services.access import (
    LEVELS,
    Identity,
    RuleSet,
    bump_rules_version,
    load_rules,
    robot_scope,
)
from ecr_oci.server.services.audit import AuditEntry, audit_now
from ecr_oci.server.services.credentials import hash_password, new_api_token
from ecr_oci.server.services.cursor import BAD_CURSOR, decode_cursor, encode_cursor
from ecr_oci.server.services.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)

__all__ = [
    "MAX_AUDIT_LIMIT",
    "MIN_PASSWORD_LENGTH",
    "NAMESPACE_PATTERN",
    "NAME_PATTERN",
    "VISIBILITIES",
    "AuditPage",
    "GrantView",
    "Target",
    "add_member",
    "audit_records",
    "bootstrap_admin",
    "check_manage",
    "create_namespace",
    "create_node",
    "create_robot",
    "create_team",
    "create_token",
    "create_user",
    "delete_principal",
    "delete_team",
    "disable",
    "enable",
    "get_namespace",
    "get_principal",
    "get_team",
    "grant",
    "list_grants",
    "list_namespaces",
    "list_principals",
    "list_teams",
    "list_tokens",
    "members_of_teams",
    "namespaces_of",
    "parse_target",
    "remove_member",
    "revoke",
    "revoke_token",
    "robot_scope",
    "set_password",
    "set_visibility",
    "team_members",
    "token_lifetime",
]

#: Principal and team names: lowercase, 2-64 characters, starting with a letter or digit.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
#: A namespace is one OCI path component (distribution-spec ``[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*``).
NAMESPACE_PATTERN = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
#: A bundle name inside a namespace (the rest of the repository path: one or more components).
_REPO_NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
MIN_PASSWORD_LENGTH = 8
_MAX_PASSWORD_LENGTH = 1024
VISIBILITIES = ("public", "private")
MAX_AUDIT_LIMIT = 1000


# ---------------------------------------------------------------------------- names and lookups


def _check_name(name: str, what: str = "name") -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInputError(
            f"{what} {name[:80]!r} is not valid: 2-64 characters a-z 0-9 . _ -, "
            "starting with a letter or digit",
            code="BAD_NAME",
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters", code="BAD_PASSWORD"
        )
    if len(password) > _MAX_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"the password is too long: at most {_MAX_PASSWORD_LENGTH} characters", code="BAD_PASSWORD"
        )


def _check_namespace_name(name: str) -> None:
    if len(name) > 255 or not NAMESPACE_PATTERN.match(name):
        raise InvalidInputError(
            f"namespace {name[:80]!r} is not valid: lowercase letters and digits, "
            "separated by single . _ or -",
            code="BAD_NAME",
        )


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise InvalidInputError(
            f"visibility {visibility[:40]!r} is not public or private", code="BAD_VISIBILITY"
        )


@dataclass(frozen=True, slots=True)
class Target:
    """``ns`` (a whole namespace) or ``ns/name`` (one repository)."""

    namespace: str
    repository: str = ""

    @property
    def text(self) -> str:
        return self.repository or self.namespace


def parse_target(target: str) -> Target:
    """A grant or visibility target; raises :class:`InvalidInputError` when malformed."""
    namespace, slash, name = target.partition("/")
    _check_namespace_name(namespace)
    if not slash:
        return Target(namespace)
    if len(target) > 255 or not _REPO_NAME_PATTERN.match(name):
        raise InvalidInputError(f"{target[:80]!r} is not NAMESPACE or NAMESPACE/NAME", code="BAD_TARGET")
    return Target(namespace, target)


_Named = TypeVar("_Named", Principal, Team, NamespaceRow)


def _get(session: Session, model: type[_Named], name: str, what: str) -> _Named:
    found = session.scalar(select(model).where(model.name == name))
    if found is None:
        raise NotFoundError(f"no {what} {name[:80]!r}")
    return found


def get_principal(session: Session, name: str) -> Principal:
    return _get(session, Principal, name, "principal")


def get_team(session: Session, name: str) -> Team:
    return _get(session, Team, name, "team")


def get_namespace(session: Session, name: str) -> NamespaceRow:
    return _get(session, NamespaceRow, name, "namespace")


def _name_taken(session: Session, name: str) -> None:
    if session.scalar(select(Principal.id).where(Principal.name == name)) is not None:
        raise ConflictError(f"the name {name!r} is taken", code="NAME_TAKEN")


def _audit(
    session: Session,
    actor: str | None,
    action: str,
    target: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    audit_now(session, AuditEntry(actor=actor, action=action, target=target, detail=detail or {}))


def _utc(when: datetime) -> datetime:
    """UTC (stored times are UTC; SQLite compares their text, so the offset must match)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _iso(when: datetime | None) -> str | None:
    when = aware(when)
    return when.isoformat() if when is not None else None


# ---------------------------------------------------------------------------- principals


def create_user(
    session: Session, name: str, password: str, *, admin: bool = False, actor: str | None = None
) -> Principal:
    """A user with a password (argon2); raises :class:`ConflictError` when the name is taken."""
    _check_name(name)
    _check_password(password)
    _name_taken(session, name)
    user = Principal(kind="user", name=name, password_hash=hash_password(password), is_admin=admin)
    session.add(user)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "user.create", name, {"admin": admin})
    return user


def create_robot(
    session: Session,
    name: str,
    *,
    namespaces: Sequence[str],
    expires_at: datetime | None = None,
    actor: str | None = None,
) -> Principal:
    """A CI robot: tokens only; its grants count only inside ``namespaces`` (which must exist)."""
    _check_name(name)
    scope = sorted(set(namespaces))
    if not scope:
        raise InvalidInputError("a robot needs at least one namespace in its scope", code="BAD_SCOPE")
    for namespace in scope:
        _check_namespace_name(namespace)
        get_namespace(session, namespace)
    _name_taken(session, name)
    robot = Principal(kind="robot", name=name, password_hash=None, expires_at=expires_at)
    session.add(robot)
    session.flush()
    session.add_all(RobotScope(principal_id=robot.id, namespace=ns) for ns in scope)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "robot.create", name, {"namespaces": scope, "expires_at": _iso(expires_at)})
    return robot


def create_node(
    session: Session, name: str, *, public_key: str | None = None, actor: str | None = None
) -> Principal:
    """A node identity (a Waggle node): grants like any principal; it logs in with API tokens, or,
    given ``public_key`` (PEM, EC P-256 or Ed25519), with assertions signed by its private key
    (``ecr-oci node credential``), so no shared secret has to be provisioned onto the node."""
    _check_name(name)
    _name_taken(session, name)
    if public_key is not None:
        try:
            check_public_key(public_key)
        except ValueError as err:
            raise InvalidInputError(f"node {name}: {err}") from None
    node = Principal(kind="node", name=name, password_hash=None, public_key=public_key)
    session.add(node)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "node.create", name)
    return node


def set_password(session: Session, name: str, password: str, *, actor: str | None = None) -> None:
    """Replace a user's password (its tokens stay valid)."""
    _check_password(password)
    user = get_principal(session, name)
    if user.kind != "user":
        raise InvalidInputError(f"{name!r} is a {user.kind}: only users have passwords", code="NOT_A_USER")
    user.password_hash = hash_password(password)
    _audit(session, actor, "user.password", name)


def _set_disabled(session: Session, name: str, disabled: bool, actor: str | None) -> Principal:
    principal = get_principal(session, name)
    if disabled and principal.is_admin and not principal.disabled and _admin_count(session) <= 1:
        raise ConflictError("the last enabled admin cannot be disabled", code="LAST_ADMIN")
    principal.disabled = disabled
    bump_rules_version(session)
    _audit(session, actor, "principal.disable" if disabled else "principal.enable", name)
    return principal


def disable(session: Session, name: str, *, actor: str | None = None) -> Principal:
    """Stop ``name`` from authenticating (password and tokens); its rows stay for the audit."""
    return _set_disabled(session, name, True, actor)


def enable(session: Session, name: str, *, actor: str | None = None) -> Principal:
    return _set_disabled(session, name, False, actor)


def delete_principal(session: Session, name: str, *, actor: str | None = None) -> None:
    """Delete ``name`` with its tokens, memberships, scope and grants; namespaces it owned keep
    no owner. The last admin cannot be deleted (nobody could manage the service any more)."""
    principal = get_principal(session, name)
    if principal.is_admin and not principal.disabled and _admin_count(session) <= 1:
        raise ConflictError("the last admin cannot be deleted", code="LAST_ADMIN")
    pid = principal.id
    # explicit deletes: SQLite enforces ON DELETE only with foreign keys on, and this is clearer
    session.execute(delete(ApiToken).where(ApiToken.principal_id == pid))
    session.execute(delete(TeamMember).where(TeamMember.principal_id == pid))
    session.execute(delete(RobotScope).where(RobotScope.principal_id == pid))
    session.execute(delete(AccessGrant).where(AccessGrant.principal_id == pid))
    for row in session.scalars(select(NamespaceRow).where(NamespaceRow.owner_id == pid)):
        row.owner_id = None
    session.delete(principal)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "principal.delete", name)


def list_principals(session: Session, *, kind: str | None = None) -> list[Principal]:
    query = select(Principal).order_by(Principal.name)
    if kind is not None:
        query = query.where(Principal.kind == kind)
    return list(session.scalars(query))


def _admin_count(session: Session) -> int:
    """Admins that can still log in (a disabled admin manages nothing)."""
    enabled_admins = (
        select(func.count()).select_from(Principal).where(Principal.is_admin, ~Principal.disabled)
    )
    return int(session.scalar(enabled_admins) or 0)


def bootstrap_admin(session: Session, name: str, password: str) -> Principal:
    """The first admin; raises :class:`ConflictError` when an admin exists (its count, not names)."""
    count = _admin_count(session)
    if count:
        raise ConflictError(
            f"{count} admin{'s exist' if count > 1 else ' exists'} already: bootstrap is only for the first "
            "(ask an admin to run `ecr-oci admin user create`)",
            code="ADMIN_EXISTS",
        )
    admin = create_user(session, name, password, admin=True, actor=None)
    _audit(session, None, "admin.bootstrap", name)
    return admin


# ---------------------------------------------------------------------------- tokens


def create_token(
    session: Session,
    principal_name: str,
    *,
    name: str = "",
    expires_at: datetime | None = None,
    actor: str | None = None,
) -> tuple[int, str]:
    """A new API token for ``principal_name``: its id and its plaintext ``ecr_<id>_<secret>``
    (shown once)."""
    if len(name) > 128:
        raise InvalidInputError("a token name has at most 128 characters", code="BAD_NAME")
    principal = get_principal(session, principal_name)
    row, plaintext = new_api_token(session, principal, name=name, expires_at=expires_at)
    _audit(
        session,
        actor,
        "token.create",
        principal_name,
        {"token_id": row.id, "name": name, "expires_at": _iso(expires_at)},
    )
    return row.id, plaintext


def list_tokens(session: Session, principal_name: str) -> list[ApiToken]:
    principal = get_principal(session, principal_name)
    return list(
        session.scalars(select(ApiToken).where(ApiToken.principal_id == principal.id).order_by(ApiToken.id))
    )


def revoke_token(session: Session, principal_name: str, token_id: int, *, actor: str | None = None) -> None:
    principal = get_principal(session, principal_name)
    done = session.execute(
        delete(ApiToken).where(ApiToken.id == token_id, ApiToken.principal_id == principal.id)
    )
    if not getattr(done, "rowcount", 0):
        raise NotFoundError(f"no token {token_id} of {principal_name!r}")
    _audit(session, actor, "token.revoke", principal_name, {"token_id": token_id})


# ---------------------------------------------------------------------------- teams


def create_team(session: Session, name: str, *, actor: str | None = None) -> Team:
    _check_name(name, "team name")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise ConflictError(f"the team {name!r} exists", code="NAME_TAKEN")
    team = Team(name=name)
    session.add(team)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "team.create", name)
    return team


def delete_team(session: Session, name: str, *, actor: str | None = None) -> None:
    team = get_team(session, name)
    session.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
    session.execute(delete(AccessGrant).where(AccessGrant.team_id == team.id))
    session.delete(team)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "team.delete", name)


def _team(session: Session, team: Team | str) -> Team:
    return team if isinstance(team, Team) else get_team(session, team)


def add_member(session: Session, team: Team | str, principal_name: str, *, actor: str | None = None) -> None:
    """Add ``principal_name`` to ``team`` (a no-op, still audited, when it is a member)."""
    row = _team(session, team)
    principal = get_principal(session, principal_name)
    if session.get(TeamMember, (row.id, principal.id)) is None:
        session.add(TeamMember(team_id=row.id, principal_id=principal.id))
        session.flush()
    bump_rules_version(session)
    _audit(session, actor, "team.member.add", row.name, {"principal": principal_name})


def remove_member(
    session: Session, team: Team | str, principal_name: str, *, actor: str | None = None
) -> None:
    row = _team(session, team)
    principal = get_principal(session, principal_name)
    member = session.get(TeamMember, (row.id, principal.id))
    if member is None:
        raise NotFoundError(f"{principal_name!r} is not a member of {row.name!r}")
    session.delete(member)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "team.member.remove", row.name, {"principal": principal_name})


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))


def team_members(session: Session, team: Team | str) -> list[str]:
    """The names of a team's members, sorted."""
    row = _team(session, team)
    return members_of_teams(session, [row])[row.id]


def members_of_teams(session: Session, teams: Sequence[Team]) -> dict[int, list[str]]:
    """:func:`team_members` of many teams in one query (the team listing), by team id."""
    members: dict[int, list[str]] = {t.id: [] for t in teams}
    rows = (
        select(TeamMember.team_id, Principal.name)
        .join(Principal, Principal.id == TeamMember.principal_id)
        .where(TeamMember.team_id.in_(list(members)))
        .order_by(Principal.name)
    )
    for team_id, name in session.execute(rows):
        members[team_id].append(name)
    return members


# ---------------------------------------------------------------------------- namespaces


def create_namespace(
    session: Session,
    name: str,
    *,
    owner: str | None,
    visibility: str = "private",
    actor: str | None = None,
) -> NamespaceRow:
    """A namespace (``owner``: a principal's name, admin in it; None: admins only)."""
    _check_namespace_name(name)
    _check_visibility(visibility)
    owner_id = get_principal(session, owner).id if owner is not None else None
    if session.scalar(select(NamespaceRow.id).where(NamespaceRow.name == name)) is not None:
        raise ConflictError(f"the namespace {name!r} exists", code="NAME_TAKEN")
    row = NamespaceRow(name=name, owner_id=owner_id, visibility=visibility)
    session.add(row)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "namespace.create", name, {"owner": owner, "visibility": visibility})
    return row


def list_namespaces(session: Session) -> list[tuple[NamespaceRow, str | None]]:
    """Every namespace with its owner's name."""
    rows = session.execute(
        select(NamespaceRow, Principal.name)
        .outerjoin(Principal, Principal.id == NamespaceRow.owner_id)
        .order_by(NamespaceRow.name)
    )
    return [(row, owner) for row, owner in rows]


def namespaces_of(session: Session, identity: Identity) -> dict[str, str]:
    """Namespace → the highest level ``identity`` has on the namespace as a whole (owner: admin),
    for ``GET /api/v1/me``; namespaces where it has nothing (or only per-bundle grants) are left out."""
    rules = load_rules(session)
    found: dict[str, str] = {}
    for namespace in sorted(rules.namespaces):
        level = rules.namespace_level(identity, namespace)
        if level is not None and not (level == "pull" and rules.namespaces[namespace].public):
            found[namespace] = level
    return found


def set_visibility(
    session: Session, target: str, visibility: str | None, *, actor: str | None = None
) -> None:
    """``ns``: the namespace's default; ``ns/name``: that bundle's override (None clears it)."""
    parsed = parse_target(target)
    namespace = get_namespace(session, parsed.namespace)
    if visibility is not None:
        _check_visibility(visibility)
    if not parsed.repository:
        if visibility is None:
            raise InvalidInputError("a namespace's visibility is public or private", code="BAD_VISIBILITY")
        namespace.visibility = visibility
    else:
        override = session.scalar(
            select(BundleVisibility).where(BundleVisibility.repository == parsed.repository)
        )
        if visibility is None:
            if override is not None:
                session.delete(override)
        elif override is None:
            session.add(
                BundleVisibility(
                    namespace_id=namespace.id, repository=parsed.repository, visibility=visibility
                )
            )
        else:
            override.visibility = visibility
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "visibility.set", parsed.text, {"visibility": visibility})


# ---------------------------------------------------------------------------- grants


def _subject(
    session: Session, principal: str | None, team: str | None
) -> tuple[Principal | None, Team | None, str]:
    if (principal is None) == (team is None):
        raise InvalidInputError("name exactly one of principal or team", code="BAD_SUBJECT")
    if principal is not None:
        return get_principal(session, principal), None, f"principal:{principal}"
    assert team is not None
    return None, get_team(session, team), f"team:{team}"


def _grant_filter(namespace_id: int, target: Target, who: Principal | None, team: Team | None) -> Any:
    return and_(
        AccessGrant.namespace_id == namespace_id,
        AccessGrant.repository == target.repository,
        AccessGrant.principal_id == who.id if who is not None else AccessGrant.principal_id.is_(None),
        AccessGrant.team_id == team.id if team is not None else AccessGrant.team_id.is_(None),
    )


def grant(
    session: Session,
    target: str,
    action: str,
    *,
    principal: str | None = None,
    team: str | None = None,
    actor: str | None = None,
) -> AccessGrant:
    """``action`` (pull | push | admin) on ``target`` for exactly one of ``principal`` or
    ``team``; an existing grant for the same target and subject is replaced. A robot may only be
    granted inside its scope (:class:`InvalidInputError` otherwise: the grant would count for
    nothing, which is surely a mistake)."""
    if action not in LEVELS:
        raise InvalidInputError(
            f"action {action[:40]!r} is not one of {', '.join(LEVELS)}", code="BAD_ACTION"
        )
    parsed = parse_target(target)
    namespace = get_namespace(session, parsed.namespace)
    who, group, subject = _subject(session, principal, team)
    if who is not None and who.kind == "robot" and parsed.namespace not in robot_scope(session, who):
        raise InvalidInputError(
            f"robot {who.name!r} is not scoped to namespace {parsed.namespace!r}", code="OUT_OF_SCOPE"
        )
    row = session.scalar(select(AccessGrant).where(_grant_filter(namespace.id, parsed, who, group)))
    if row is None:
        row = AccessGrant(
            namespace_id=namespace.id,
            repository=parsed.repository,
            principal_id=who.id if who is not None else None,
            team_id=group.id if group is not None else None,
            action=action,
        )
        session.add(row)
    else:
        row.action = action
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "grant.add", parsed.text, {"subject": subject, "action": action})
    return row


def revoke(
    session: Session,
    target: str,
    *,
    principal: str | None = None,
    team: str | None = None,
    actor: str | None = None,
) -> None:
    """Remove the grant on ``target`` for the subject; :class:`NotFoundError` when there is none."""
    parsed = parse_target(target)
    namespace = get_namespace(session, parsed.namespace)
    who, group, subject = _subject(session, principal, team)
    row = session.scalar(select(AccessGrant).where(_grant_filter(namespace.id, parsed, who, group)))
    if row is None:
        raise NotFoundError(f"no grant on {parsed.text!r} for {subject}")
    session.delete(row)
    session.flush()
    bump_rules_version(session)
    _audit(session, actor, "grant.remove", parsed.text, {"subject": subject})


@dataclass(frozen=True, slots=True)
class GrantView:
    target: str
    action: str
    principal: str | None
    team: str | None


def list_grants(
    session: Session, *, namespace: str | None = None, principal: str | None = None
) -> list[GrantView]:
    """Grants, optionally of one namespace and/or one principal (directly, not via teams)."""
    query = (
        select(AccessGrant, NamespaceRow.name, Principal.name, Team.name)
        .join(NamespaceRow, NamespaceRow.id == AccessGrant.namespace_id)
        .outerjoin(Principal, Principal.id == AccessGrant.principal_id)
        .outerjoin(Team, Team.id == AccessGrant.team_id)
        .order_by(NamespaceRow.name, AccessGrant.repository, AccessGrant.id)
    )
    if namespace is not None:
        query = query.where(NamespaceRow.name == namespace)
    if principal is not None:
        query = query.where(Principal.name == principal)
    return [
        GrantView(target=row.repository or ns, action=row.action, principal=who, team=team)
        for row, ns, who, team in session.execute(query)
    ]


# ---------------------------------------------------------------------------- permissions


def token_lifetime(identity: Identity, expires_at: datetime | None) -> datetime | None:
    """The expiry of a token ``identity`` creates: a caller logged in with an API token cannot
    mint one that outlives its own (a leaked short-lived token must not become a permanent one)."""
    if identity.method != "token" or identity.token_expires is None:
        return expires_at
    wanted = aware(expires_at)
    return identity.token_expires if wanted is None or wanted > identity.token_expires else wanted


def check_manage(
    session: Session, identity: Identity, *, namespace: str | None = None, token_for: str | None = None
) -> None:
    """Raise :class:`ForbiddenError` unless ``identity`` may manage ``namespace`` (grants,
    visibility), or create a token for ``token_for``. Admins may do anything; ``namespace=None`` and
    ``token_for=None`` asks for admin."""
    if identity.is_admin:
        return
    if identity.anonymous:
        raise ForbiddenError("not allowed: log in first")
    if token_for is not None:
        if token_for == identity.name and identity.kind == "user":
            return
        target = session.scalar(select(Principal).where(Principal.name == token_for))
        if target is not None and target.kind == "robot":
            scope = robot_scope(session, target)
            rules = load_rules(session)
            if scope and all(_is_namespace_admin(rules, identity, ns) for ns in scope):
                return
        raise ForbiddenError(f"not allowed: creating tokens for {token_for[:80]!r}")
    if namespace is not None:
        if _is_namespace_admin(load_rules(session), identity, namespace):
            return
        raise ForbiddenError(f"not allowed: managing namespace {namespace[:80]!r}")
    raise ForbiddenError("not allowed: admins only")


def _is_namespace_admin(rules: RuleSet, identity: Identity, namespace: str) -> bool:
    # level() knows owners, team grants and a robot's scope (an owner robot outside its scope
    # manages nothing there)
    return rules.namespace_level(identity, namespace) == "admin"


# ---------------------------------------------------------------------------- audit


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next_cursor: str | None


def _decode_audit_cursor(cursor: str) -> tuple[datetime, int]:
    value = decode_cursor(cursor)
    try:
        when, record_id = value
        parsed = _utc(datetime.fromisoformat(when))
        if not isinstance(record_id, int) or not 0 < record_id < 2**63:
            raise TypeError(record_id)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInputError(BAD_CURSOR, code="BAD_CURSOR") from None
    return parsed, record_id


def audit_records(
    session: Session,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> AuditPage:
    """Audit records, newest first; ``action`` matches exactly or as a prefix with ``.``
    (``grant`` matches ``grant.add`` and ``grant.remove``). Keyset pagination on (time, id)."""
    limit = max(1, min(limit, MAX_AUDIT_LIMIT))
    query = select(AuditRecord).order_by(AuditRecord.time.desc(), AuditRecord.id.desc())
    if action is not None:
        query = query.where(
            or_(AuditRecord.action == action, AuditRecord.action.startswith(action + ".", autoescape=True))
        )
    if actor is not None:
        query = query.where(AuditRecord.actor == actor)
    if since is not None:
        try:
            query = query.where(AuditRecord.time >= _utc(since))
        except OverflowError:
            raise InvalidInputError(
                "since: not a time this service can compare", code="BAD_REQUEST"
            ) from None
    if cursor is not None:
        when, record_id = _decode_audit_cursor(cursor)
        query = query.where(
            or_(AuditRecord.time < when, and_(AuditRecord.time == when, AuditRecord.id < record_id))
        )
    records = list(session.scalars(query.limit(limit + 1)))
    next_cursor = None
    if len(records) > limit:
        records = records[:limit]
        last = records[-1]
        next_cursor = encode_cursor([_iso(last.time), last.id])
    return AuditPage(records, next_cursor)
