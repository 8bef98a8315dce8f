"""Passwords, API tokens and registry JWTs (services/credentials.py, services/tokens.py).

The registry's own verdict on our JWTs is in tests/integration/access/ (forgery cases); here the
claims and the authentication rules are pinned.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from sqlalchemy.orm import Session, sessionmaker

from ecr_oci.server.db.accounts import Principal, RobotScope, Team, TeamMember
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.services.credentials import Authenticator, hash_password, new_api_token, parse_token
from ecr_oci.server.services.tokens import Scope, TokenIssuer, parse_scope, parse_scopes


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return session_factory(engine)


def _user(session: Session, name: str, password: str | None = None, **extra: object) -> Principal:
    principal = Principal(
        kind=str(extra.pop("kind", "user")),
        name=name,
        password_hash=hash_password(password) if password else None,
        is_admin=bool(extra.pop("is_admin", False)),
        disabled=bool(extra.pop("disabled", False)),
        description="",
        **extra,
    )
    session.add(principal)
    session.flush()
    return principal


def test_password_authentication(sessions: sessionmaker[Session]) -> None:
    auth = Authenticator()
    with sessions.begin() as session:
        ana = _user(session, "ana", "correct horse")
        team = Team(name="vision")
        session.add(team)
        session.flush()
        session.add(TeamMember(team_id=team.id, principal_id=ana.id))
        _user(session, "gone", "correct horse", disabled=True)
    with sessions() as session:
        identity = auth.authenticate(session, "ana", "correct horse")
        assert identity is not None and identity.name == "ana" and identity.teams == {"vision"}
        assert auth.authenticate(session, "ana", "correct horse") == identity  # cached check
        assert auth.authenticate(session, "ana", "wrong") is None
        assert auth.authenticate(session, "nobody", "correct horse") is None
        assert auth.authenticate(session, "gone", "correct horse") is None


def test_unknown_user_costs_a_real_check(sessions: sessionmaker[Session]) -> None:
    """The answer time must not tell which names exist (argon2 runs either way)."""
    auth = Authenticator()
    with sessions.begin() as session:
        _user(session, "ana", "correct horse")
    with sessions() as session:
        t0 = time.perf_counter()
        auth.authenticate(session, "ana", "wrong password")
        known = time.perf_counter() - t0
        t0 = time.perf_counter()
        auth.authenticate(session, "nobody", "wrong password")
        unknown = time.perf_counter() - t0
    assert unknown > known / 4


def test_api_tokens(sessions: sessionmaker[Session]) -> None:
    auth = Authenticator()
    with sessions.begin() as session:
        bot = _user(session, "ci-bot", kind="robot")
        session.add(RobotScope(principal_id=bot.id, namespace="waggle"))
        _, token = new_api_token(session, bot, name="ci")
        _, expired = new_api_token(session, bot, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        node = _user(session, "node-1", kind="node", expires_at=datetime.now(UTC) - timedelta(days=1))
        _, old_node = new_api_token(session, node)
    parsed = parse_token(token)
    assert parsed is not None
    with sessions() as session:
        identity = auth.authenticate(session, "ci-bot", token)
        assert identity is not None and identity.kind == "robot" and identity.scope == {"waggle"}
        assert auth.authenticate_bearer(session, token) == identity
        assert auth.authenticate(session, "someone-else", token) is None  # the name must match
        assert auth.authenticate(session, "ci-bot", token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert auth.authenticate(session, "ci-bot", expired) is None
        assert auth.authenticate(session, "node-1", old_node) is None  # the principal expired
        assert auth.authenticate(session, "ci-bot", "ecr_999_nope") is None
    for bad in ("ecr_", "ecr_x_y", "ecr_1_", "token", "ecr_" + "1" * 30 + "_s"):
        assert parse_token(bad) is None


def test_scopes() -> None:
    assert parse_scope("repository(plugin):waggle/x:pull") == Scope("repository", "waggle/x", ("pull",))
    assert parse_scope("repository:waggle/x:") == Scope("repository", "waggle/x", ())
    assert parse_scope("garbage") is None
    assert parse_scope("repository:a:b:pull") is None
    assert parse_scopes(["repository:a/b:pull repository:c/d:push", "registry:catalog:*"]) == [
        Scope("repository", "a/b", ("pull",)),
        Scope("repository", "c/d", ("push",)),
        Scope("registry", "catalog", ("*",)),
    ]


def test_issued_token_claims(tmp_path: Path) -> None:
    issuer = TokenIssuer(tmp_path / "k.pem", tmp_path / "c.pem", issuer="ecr-oci", service="reg", ttl=300)
    access = [{"type": "repository", "name": "waggle/x", "actions": ["pull"]}]
    body = issuer.issue("ana", access)
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256" and len(header["x5c"]) == 1
    certificate = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    claims = jwt.decode(body["token"], certificate.public_key(), algorithms=["ES256"], audience="reg")
    assert claims["iss"] == "ecr-oci" and claims["sub"] == "ana" and claims["aud"] == "reg"
    assert claims["access"] == access and claims["exp"] - claims["iat"] == 300
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    # the same files give the same key on the next start
    again = TokenIssuer(tmp_path / "k.pem", tmp_path / "c.pem", issuer="ecr-oci", service="reg")
    jwt.decode(again.issue("x", [])["token"], certificate.public_key(), algorithms=["ES256"], audience="reg")
