"""Who may do what to which bundle: the one decision that the token server, the search API, the
referrers endpoint and the admin API all ask (docs/access.md).

    >>> rules = RuleSet(namespaces={"waggle": NamespaceRule(owner="ana", public=True)},
    ...                 overrides={"waggle/secret": False})
    >>> rules.level(ANONYMOUS, "waggle/hello"), rules.level(ANONYMOUS, "waggle/secret")
    ('pull', None)
    >>> rules.level(Identity("ana"), "waggle/secret")
    'admin'
    >>> sorted(rules.registry_actions(ANONYMOUS, "waggle/hello", {"pull", "push"}))
    ['pull']

The rules (one level per principal and repository, the highest that applies):

- an admin has ``admin`` everywhere; a namespace's owner has ``admin`` in it;
- grants (``pull`` < ``push`` < ``admin``) to the principal or to a team it is in, on the whole
  namespace or on one repository; a robot's grants count only inside its scope namespaces;
- anyone, anonymous included, may ``pull`` a public bundle: its own visibility override, else its
  namespace's default. A repository in a namespace that does not exist is private to all but admins
  (so nothing can be pushed or read there until an admin creates the namespace).

Registry actions follow from the level: ``pull`` → pull; ``push`` → pull, push; ``admin`` → pull,
push, delete. The registry catalog (``registry:catalog:*``) lists every repository name, so only
admins get it; everyone else lists bundles through the search API, which applies
:meth:`RuleSet.visibility`.

Why a snapshot in memory (:class:`RuleCache`): the token endpoint must answer thousands of requests
per second; the rules are a few thousand rows that change rarely. The one-row ``rules_version`` is
read at most twice a second and the rules reloaded only when an admin change bumped it: a change
applies at once in the replica that made it, and within half a second in the others.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ecr_oci.server.db.accounts import (
    AccessGrant,
    BundleVisibility,
    NamespaceRow,
    Principal,
    RobotScope,
    RulesVersion,
    Team,
    TeamMember,
)
from ecr_oci.server.services.visibility import Visibility

__all__ = [
    "ANONYMOUS",
    "LEVELS",
    "Identity",
    "Level",
    "NamespaceRule",
    "RuleCache",
    "RuleSet",
    "bump_rules_version",
    "identities_of",
    "identity_of",
    "load_rules",
    "robot_scope",
]

Level = Literal["pull", "push", "admin"]
#: Levels from weakest to strongest.
LEVELS: tuple[Level, ...] = ("pull", "push", "admin")
_RANK = {level: rank for rank, level in enumerate(LEVELS)}
#: Identities whose visibility one rules snapshot remembers (then it starts over).
_VISIBLE_MAX = 4096
_ACTIONS: dict[Level, frozenset[str]] = {
    "pull": frozenset({"pull"}),
    "push": frozenset({"pull", "push"}),
    "admin": frozenset({"pull", "push", "delete"}),
}


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated principal (or :data:`ANONYMOUS`: ``name`` None)."""

    name: str | None
    kind: str = "user"
    is_admin: bool = False
    teams: frozenset[str] = frozenset()
    #: Robots only: the namespaces their grants count in.
    scope: frozenset[str] | None = None
    #: How it logged in: ``password``, ``token`` (an API token), ``assertion`` (a node's key).
    #: Changing a password needs a password login; a token login cannot mint a longer-lived token.
    method: str = "password"
    #: With ``method == "token"``: when that token expires (None: never).
    token_expires: datetime | None = None

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Identity(None, kind="anonymous")


@dataclass(frozen=True, slots=True)
class NamespaceRule:
    owner: str | None
    public: bool


def _higher(a: Level | None, b: Level | None) -> Level | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if _RANK[a] >= _RANK[b] else b


@dataclass
class RuleSet:
    """The access rules as plain values (from :func:`load_rules`, or built by hand in tests)."""

    namespaces: dict[str, NamespaceRule] = field(default_factory=dict)
    #: repository -> public? (overrides the namespace default)
    overrides: dict[str, bool] = field(default_factory=dict)
    #: ("principal"|"team", name) -> {namespace or repository -> level}; a key without "/" is a
    #: whole namespace.
    grants: dict[tuple[str, str], dict[str, Level]] = field(default_factory=dict)
    #: ``visibility()`` per identity: a snapshot never changes (a change makes a new RuleSet), and
    #: the walk over every namespace and grant would otherwise run on each API request.
    _visible: dict[Identity, Visibility] = field(default_factory=dict, repr=False, compare=False)

    def is_public(self, repository: str) -> bool:
        namespace = repository.split("/", 1)[0]
        rule = self.namespaces.get(namespace)
        if rule is None:
            return False
        return self.overrides.get(repository, rule.public)

    def _subjects(self, identity: Identity) -> list[tuple[str, str]]:
        if identity.name is None:
            return []
        return [("principal", identity.name)] + [("team", team) for team in sorted(identity.teams)]

    def level(self, identity: Identity, repository: str) -> Level | None:
        """The highest level ``identity`` has on ``repository`` (``namespace/name``), or None."""
        if identity.is_admin:
            return "admin"
        namespace, slash, _ = repository.partition("/")
        rule = self.namespaces.get(namespace)
        if not slash or rule is None:
            return None
        best: Level | None = "pull" if self.is_public(repository) else None
        if identity.scope is not None and namespace not in identity.scope:
            return best
        if identity.name is not None and rule.owner == identity.name:
            return "admin"
        for subject in self._subjects(identity):
            granted = self.grants.get(subject)
            if granted:
                best = _higher(best, granted.get(namespace))
                best = _higher(best, granted.get(repository))
        return best

    def namespace_level(self, identity: Identity, namespace: str) -> Level | None:
        """The level ``identity`` has on ``namespace`` as a whole (owner: admin), not counting
        per-bundle grants; None for a namespace that does not exist."""
        if namespace not in self.namespaces:
            return None
        # "\x00" is a name no repository has: only namespace-wide rights count
        return self.level(identity, f"{namespace}/\x00")

    def registry_actions(self, identity: Identity, repository: str, requested: Iterable[str]) -> set[str]:
        """The subset of ``requested`` registry actions (``pull``, ``push``, ``delete``, ``*``)
        that ``identity`` may do on ``repository``."""
        level = self.level(identity, repository)
        if level is None:
            return set()
        allowed = _ACTIONS[level]
        wanted = set(requested)
        if "*" in wanted:
            return set(allowed) | ({"*"} if level == "admin" else set())
        return wanted & allowed

    def visibility(self, identity: Identity) -> Visibility:
        """What ``identity`` may see in the service: exactly the repositories it may pull."""
        if identity.is_admin:
            return Visibility.everything()
        found = self._visible.get(identity)
        if found is None:
            if len(self._visible) >= _VISIBLE_MAX:
                self._visible.clear()
            found = self._visible[identity] = self._compute_visibility(identity)
        return found

    def _compute_visibility(self, identity: Identity) -> Visibility:
        whole: set[str] = set()
        repositories: set[str] = set()
        hidden: set[str] = set()
        in_scope = identity.scope
        for namespace, rule in self.namespaces.items():
            owned = identity.name is not None and rule.owner == identity.name
            if rule.public or (owned and (in_scope is None or namespace in in_scope)):
                whole.add(namespace)
        for subject in self._subjects(identity):
            for target in self.grants.get(subject, {}):
                namespace = target.split("/", 1)[0]
                if namespace not in self.namespaces or (in_scope is not None and namespace not in in_scope):
                    continue
                (repositories if "/" in target else whole).add(target)
        for repository, public in self.overrides.items():
            namespace = repository.split("/", 1)[0]
            if public:
                repositories.add(repository)
            elif (
                namespace in whole
                and self.level(identity, repository) is None
                and repository not in repositories
            ):
                hidden.add(repository)
        return Visibility.only(repositories, whole, hidden=hidden)


def load_rules(session: Session) -> RuleSet:
    """The rules as they are in the database now (a few queries, no per-row lookups)."""
    principals = {pid: name for pid, name in session.execute(select(Principal.id, Principal.name))}
    teams = {tid: name for tid, name in session.execute(select(Team.id, Team.name))}
    namespaces: dict[int, str] = {}
    rules = RuleSet()
    for ns_id, name, owner_id, visibility in session.execute(
        select(NamespaceRow.id, NamespaceRow.name, NamespaceRow.owner_id, NamespaceRow.visibility)
    ):
        namespaces[ns_id] = name
        owner = principals.get(owner_id) if owner_id is not None else None
        rules.namespaces[name] = NamespaceRule(owner=owner, public=visibility == "public")
    for repository, visibility in session.execute(
        select(BundleVisibility.repository, BundleVisibility.visibility)
    ):
        rules.overrides[repository] = visibility == "public"
    grants: dict[tuple[str, str], dict[str, Level]] = defaultdict(dict)
    for ns_id, repository, principal_id, team_id, action in session.execute(
        select(
            AccessGrant.namespace_id,
            AccessGrant.repository,
            AccessGrant.principal_id,
            AccessGrant.team_id,
            AccessGrant.action,
        )
    ):
        if principal_id is not None and principal_id in principals:
            subject = ("principal", principals[principal_id])
        elif team_id is not None and team_id in teams:
            subject = ("team", teams[team_id])
        else:
            continue
        target = repository or namespaces[ns_id]
        level: Level = action if action in _RANK else "pull"
        grants[subject][target] = _higher(grants[subject].get(target), level) or level
    rules.grants = dict(grants)
    return rules


def identity_of(session: Session, principal: Principal) -> Identity:
    """The :class:`Identity` of a principal row: its teams and (robots) scope read now."""
    return identities_of(session, [principal])[principal.id]


def identities_of(session: Session, principals: Sequence[Principal]) -> dict[int, Identity]:
    """:func:`identity_of` for many principals in two queries (an admin listing, not one
    round trip per principal), by principal id."""
    ids = [p.id for p in principals]
    teams: dict[int, set[str]] = {i: set() for i in ids}
    memberships = (
        select(TeamMember.principal_id, Team.name)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.principal_id.in_(ids))
    )
    for principal_id, team in session.execute(memberships):
        teams[principal_id].add(team)
    robots = [p.id for p in principals if p.kind == "robot"]
    scopes: dict[int, list[str]] = {i: [] for i in robots}
    if robots:
        scoped = (
            select(RobotScope.principal_id, RobotScope.namespace)
            .where(RobotScope.principal_id.in_(robots))
            .order_by(RobotScope.namespace)
        )
        for principal_id, namespace in session.execute(scoped):
            scopes[principal_id].append(namespace)
    return {
        p.id: Identity(
            p.name,
            kind=p.kind,
            is_admin=p.is_admin,
            teams=frozenset(teams[p.id]),
            scope=frozenset(scopes[p.id]) if p.id in scopes else None,
        )
        for p in principals
    }


def robot_scope(session: Session, principal: Principal) -> list[str]:
    """The namespaces a robot is scoped to, sorted."""
    return list(
        session.scalars(
            select(RobotScope.namespace)
            .where(RobotScope.principal_id == principal.id)
            .order_by(RobotScope.namespace)
        )
    )


def bump_rules_version(session: Session) -> None:
    """Mark the rules changed (call in the same transaction as the change)."""
    session.execute(update(RulesVersion).where(RulesVersion.id == 1).values(version=RulesVersion.version + 1))


class RuleCache:
    """The current :class:`RuleSet`, reloaded when ``rules_version`` moved (thread-safe).

    The version is read at most every ``recheck`` seconds: a change made through this process
    (the admin API calls :meth:`invalidate`) applies to the next request, a change made through
    another replica within ``recheck`` seconds. Between checks a request needs no database at all.
    """

    def __init__(self, recheck: float = 0.5) -> None:
        self.recheck = recheck
        self._lock = threading.Lock()
        self._version: int | None = None
        self._checked = float("-inf")
        self._rules = RuleSet()

    def invalidate(self) -> None:
        with self._lock:
            self._version, self._checked = None, float("-inf")

    def fresh(self) -> RuleSet | None:
        """The cached rules when they were checked less than ``recheck`` seconds ago."""
        with self._lock:
            if self._version is not None and time.monotonic() - self._checked < self.recheck:
                return self._rules
        return None

    def get(self, session: Session) -> RuleSet:
        cached = self.fresh()
        if cached is not None:
            return cached
        version = session.scalar(select(RulesVersion.version).where(RulesVersion.id == 1))
        checked = time.monotonic()
        with self._lock:
            if version is not None and version == self._version:
                self._checked = checked
                return self._rules
        rules = load_rules(session)
        with self._lock:
            self._rules, self._version, self._checked = rules, version, checked
        return rules
