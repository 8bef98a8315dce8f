"""services.accounts on SQLite: name rules, conflicts, robot scopes, permission checks, rule-version
bumps, and audit records that commit (or roll back) with the change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.server.db.accounts import AccessGrant, AuditRecord, BundleVisibility, Principal, RulesVersion
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.services import accounts
from ecr_oci.server.services.access import identities_of, identity_of, load_rules
from ecr_oci.server.services.credentials import Authenticator
from ecr_oci.server.services.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """One migrated database for the module (argon2 and migrations are the slow parts)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('accounts') / 'ecr.db'}")
    upgrade(engine)
    yield session_factory(engine, write=True)
    engine.dispose()


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction rolled back after the test: every test starts from the empty tables."""
    with sessions() as made:
        yield made
        made.rollback()


def _version(session: Session) -> int:
    return int(session.scalar(select(RulesVersion.version).where(RulesVersion.id == 1)) or 0)


def _actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditRecord.action).order_by(AuditRecord.id)))


@pytest.mark.parametrize("name", ["ab", "ana", "ci-bot.2", "a_b", "0x", "a" * 64])
def test_good_names(session: Session, name: str) -> None:
    accounts.create_node(session, name)


@pytest.mark.parametrize("name", ["a", "Ana", "-ana", ".ana", "a b", "ana/x", "a" * 65, "", "änä"])
def test_bad_names(session: Session, name: str) -> None:
    with pytest.raises(InvalidInputError):
        accounts.create_node(session, name)


@pytest.mark.parametrize("name", ["waggle", "a", "my-ns", "a.b_c", "0"])
def test_good_namespace_names(session: Session, name: str) -> None:
    accounts.create_namespace(session, name, owner=None)


@pytest.mark.parametrize("name", ["Waggle", "a--", "-a", "a/b", "a..b", "", "a_", "x" * 256])
def test_bad_namespace_names(session: Session, name: str) -> None:
    with pytest.raises(InvalidInputError):
        accounts.create_namespace(session, name, owner=None)


def test_user_password_rules_and_conflicts(session: Session) -> None:
    with pytest.raises(InvalidInputError, match="too short"):
        accounts.create_user(session, "ana", "short")
    user = accounts.create_user(session, "ana", PASSWORD)
    assert user.kind == "user" and user.password_hash and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    accounts.create_namespace(session, "waggle", owner="ana")  # the robot's scope: only its name clashes
    for make in (
        lambda: accounts.create_user(session, "ana", PASSWORD),
        lambda: accounts.create_node(session, "ana"),
        lambda: accounts.create_robot(session, "ana", namespaces=["waggle"]),
    ):
        with pytest.raises(ConflictError):
            make()
    accounts.create_team(session, "devs")
    with pytest.raises(ConflictError):
        accounts.create_team(session, "devs")
    with pytest.raises(ConflictError):
        accounts.create_namespace(session, "waggle", owner=None)
    with pytest.raises(NotFoundError):
        accounts.create_namespace(session, "other", owner="nobody")


def test_robot_scope_is_enforced(session: Session) -> None:
    accounts.create_namespace(session, "waggle", owner=None)
    accounts.create_namespace(session, "other", owner=None)
    with pytest.raises(NotFoundError):
        accounts.create_robot(session, "ci", namespaces=["missing"])
    with pytest.raises(InvalidInputError):
        accounts.create_robot(session, "ci", namespaces=[])
    robot = accounts.create_robot(
        session, "ci", namespaces=["waggle"], expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    assert robot.kind == "robot" and robot.password_hash is None
    assert accounts.robot_scope(session, robot) == ["waggle"]
    accounts.grant(session, "waggle/hello", "push", principal="ci")
    with pytest.raises(InvalidInputError, match="not scoped"):
        accounts.grant(session, "other", "pull", principal="ci")
    rules = load_rules(session)
    identity = identity_of(session, robot)
    assert rules.level(identity, "waggle/hello") == "push"
    assert rules.level(identity, "other/x") is None


def test_grant_replaces_and_revoke(session: Session) -> None:
    accounts.create_user(session, "ana", PASSWORD)
    accounts.create_namespace(session, "waggle", owner=None)
    team = accounts.create_team(session, "devs")
    accounts.add_member(session, team, "ana")
    accounts.grant(session, "waggle", "pull", principal="ana")
    accounts.grant(session, "waggle", "admin", principal="ana")
    accounts.grant(session, "waggle/x", "push", team="devs")
    assert session.scalar(select(func.count()).select_from(AccessGrant)) == 2
    views = accounts.list_grants(session, namespace="waggle")
    assert [(g.target, g.action, g.principal, g.team) for g in views] == [
        ("waggle", "admin", "ana", None),
        ("waggle/x", "push", None, "devs"),
    ]
    with pytest.raises(InvalidInputError):
        accounts.grant(session, "waggle", "pull", principal="ana", team="devs")
    with pytest.raises(InvalidInputError):
        accounts.grant(session, "waggle", "delete", principal="ana")
    with pytest.raises(NotFoundError):
        accounts.grant(session, "nowhere", "pull", principal="ana")
    accounts.revoke(session, "waggle", principal="ana")
    with pytest.raises(NotFoundError):
        accounts.revoke(session, "waggle", principal="ana")
    ana = identity_of(session, accounts.get_principal(session, "ana"))
    assert load_rules(session).level(ana, "waggle/x") == "push"
    accounts.remove_member(session, "devs", "ana")
    ana = identity_of(session, accounts.get_principal(session, "ana"))
    assert load_rules(session).level(ana, "waggle/x") is None


def test_visibility(session: Session) -> None:
    accounts.create_namespace(session, "waggle", owner=None, visibility="public")
    accounts.set_visibility(session, "waggle/secret", "private")
    rules = load_rules(session)
    assert rules.is_public("waggle/hello") and not rules.is_public("waggle/secret")
    accounts.set_visibility(session, "waggle/secret", None)
    assert session.scalar(select(func.count()).select_from(BundleVisibility)) == 0
    accounts.set_visibility(session, "waggle", "private")
    assert not load_rules(session).is_public("waggle/hello")
    with pytest.raises(InvalidInputError):
        accounts.set_visibility(session, "waggle", None)
    with pytest.raises(InvalidInputError):
        accounts.set_visibility(session, "waggle", "secret")
    with pytest.raises(NotFoundError):
        accounts.set_visibility(session, "nowhere/x", "public")


def test_every_change_bumps_rules_version_and_is_audited(session: Session) -> None:
    steps = [
        ("user.create", lambda: accounts.create_user(session, "ana", PASSWORD, actor="root")),
        ("namespace.create", lambda: accounts.create_namespace(session, "waggle", owner="ana", actor="root")),
        ("robot.create", lambda: accounts.create_robot(session, "ci", namespaces=["waggle"], actor="root")),
        ("node.create", lambda: accounts.create_node(session, "node-1", actor="root")),
        ("team.create", lambda: accounts.create_team(session, "devs", actor="root")),
        ("team.member.add", lambda: accounts.add_member(session, "devs", "ana", actor="root")),
        ("grant.add", lambda: accounts.grant(session, "waggle", "pull", principal="node-1", actor="ana")),
        ("grant.remove", lambda: accounts.revoke(session, "waggle", principal="node-1", actor="ana")),
        ("visibility.set", lambda: accounts.set_visibility(session, "waggle/x", "public", actor="ana")),
        ("principal.disable", lambda: accounts.disable(session, "ci", actor="root")),
        ("principal.delete", lambda: accounts.delete_principal(session, "ci", actor="root")),
    ]
    for action, step in steps:
        before = _version(session)
        step()
        assert _version(session) == before + 1, action
        assert _actions(session)[-1] == action
    before = _version(session)
    _, token = accounts.create_token(session, "ana", name="laptop", actor="ana")
    assert _version(session) == before  # a token changes no rule
    record = session.scalars(select(AuditRecord).order_by(AuditRecord.id.desc())).first()
    assert record is not None and record.action == "token.create" and record.actor == "ana"
    secret = token.split("_", 2)[2]  # ecr_<id>_<secret>; the secret itself may hold "_"
    dump = repr([(r.actor, r.action, r.target, r.detail) for r in session.scalars(select(AuditRecord))])
    assert secret not in dump and PASSWORD not in dump


def test_audit_rolls_back_with_the_change(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        before = session.scalar(select(func.count()).select_from(AuditRecord))
        accounts.create_node(session, "ghost", actor="root")
        session.rollback()
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == before
        assert session.scalar(select(Principal).where(Principal.name == "ghost")) is None


def test_token_authenticates_once_created(session: Session) -> None:
    accounts.create_node(session, "node-1")
    _, token = accounts.create_token(session, "node-1")
    assert token.startswith("ecr_")
    identity = Authenticator().authenticate(session, "node-1", token)
    assert identity is not None and identity.name == "node-1" and identity.kind == "node"
    accounts.disable(session, "node-1")
    assert Authenticator().authenticate(session, "node-1", token) is None
    with pytest.raises(NotFoundError):
        accounts.create_token(session, "nobody")


def test_bootstrap_only_once(session: Session) -> None:
    admin = accounts.bootstrap_admin(session, "admin", PASSWORD)
    assert admin.is_admin
    with pytest.raises(ConflictError, match="1 admin exists") as caught:
        accounts.bootstrap_admin(session, "admin2", PASSWORD)
    assert "admin2" not in str(caught.value) and "'admin'" not in str(caught.value)
    with pytest.raises(ConflictError, match="last admin"):
        accounts.delete_principal(session, "admin")


def test_check_manage(session: Session) -> None:
    admin = accounts.bootstrap_admin(session, "root", PASSWORD)
    for name in ("ana", "bob", "eve"):
        accounts.create_user(session, name, PASSWORD)
    accounts.create_namespace(session, "waggle", owner="ana")
    accounts.create_namespace(session, "other", owner="eve")
    accounts.grant(session, "waggle", "admin", principal="bob")
    accounts.create_robot(session, "ci", namespaces=["waggle"])
    accounts.create_robot(session, "ci2", namespaces=["waggle", "other"])
    root, ana, bob, eve = (
        identity_of(session, accounts.get_principal(session, n)) for n in ("root", "ana", "bob", "eve")
    )
    assert admin.is_admin
    accounts.check_manage(session, root)
    accounts.check_manage(session, root, namespace="other", token_for="ci2")
    for who in (ana, bob):
        accounts.check_manage(session, who, namespace="waggle")
        accounts.check_manage(session, who, token_for="ci")
        with pytest.raises(ForbiddenError):
            accounts.check_manage(session, who, token_for="ci2")  # also scoped to "other"
        with pytest.raises(ForbiddenError):
            accounts.check_manage(session, who, namespace="other")
        with pytest.raises(ForbiddenError):
            accounts.check_manage(session, who)
    accounts.check_manage(session, eve, token_for="eve")
    for forbidden in ({"namespace": "waggle"}, {"token_for": "ci"}, {"token_for": "ana"}):
        with pytest.raises(ForbiddenError):
            accounts.check_manage(session, eve, **forbidden)  # type: ignore[arg-type]
    assert accounts.namespaces_of(session, ana) == {"waggle": "admin"}
    assert accounts.namespaces_of(session, bob) == {"waggle": "admin"}


def test_audit_records_keyset_pagination(session: Session) -> None:
    for index in range(7):
        accounts.create_node(session, f"node-{index}", actor="root")
    accounts.create_team(session, "devs", actor="other")
    seen: list[str] = []
    cursor = None
    while True:
        page = accounts.audit_records(session, action="node", limit=3, cursor=cursor)
        seen += [r.target or "" for r in page.records]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"node-{i}" for i in reversed(range(7))]
    assert [r.action for r in accounts.audit_records(session, actor="other").records] == ["team.create"]
    future = accounts.audit_records(session, since=datetime.now(UTC) + timedelta(hours=1))
    assert future.records == [] and future.next_cursor is None
    with pytest.raises(InvalidInputError):
        accounts.audit_records(session, cursor="not-a-cursor")


def test_listings_read_teams_and_scopes_in_a_fixed_number_of_queries(session: Session) -> None:
    """The admin listings of principals and teams: the same answers as one principal or team at
    a time, in two queries and one, however many there are (not one round trip per row)."""
    accounts.create_namespace(session, "waggle", owner=None)
    accounts.create_namespace(session, "sage", owner=None)
    robots = [
        accounts.create_robot(session, f"bot{i}", namespaces=["waggle", "sage"][: 1 + i % 2])
        for i in range(6)
    ]
    user = accounts.create_user(session, "ada", PASSWORD)
    for team, names in (("vision", ["bot0", "bot1", "ada"]), ("audio", ["bot1"]), ("empty", [])):
        accounts.create_team(session, team)
        for name in names:
            accounts.add_member(session, team, name)
    principals = [*robots, user]
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", listener)
    try:
        identities = identities_of(session, principals)
        teams = accounts.list_teams(session)
        members = accounts.members_of_teams(session, teams)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 2 + 1 + 1  # teams and scopes; the team list; every team's members
    # every principal's teams and scope, written out (not compared with identity_of, which is
    # identities_of of one)
    assert {
        i.name: (sorted(i.teams), sorted(i.scope) if i.scope is not None else None)
        for i in identities.values()
    } == {
        "bot0": (["vision"], ["waggle"]),
        "bot1": (["audio", "vision"], ["sage", "waggle"]),
        "bot2": ([], ["waggle"]),
        "bot3": ([], ["sage", "waggle"]),
        "bot4": ([], ["waggle"]),
        "bot5": ([], ["sage", "waggle"]),
        "ada": (["vision"], None),
    }
    assert {t.name: members[t.id] for t in teams} == {
        "audio": ["bot1"],
        "empty": [],
        "vision": ["ada", "bot0", "bot1"],
    }
