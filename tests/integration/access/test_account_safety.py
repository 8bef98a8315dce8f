"""What a stolen or short-lived credential cannot do, against the real service (issue 5, from a
security review): a token login cannot change the password nor mint a longer-lived token, a robot
owning a namespace outside its scope manages nothing there, the last admin stays, a forged node
assertion is a 401 (never a 500), a NUL in a scope cannot erase audit entries, and a bundle's
activity names its users only to its admins.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ecr_oci.oci.auth import Credentials
from ecr_oci.server.services import accounts
from tests.fixtures.access import AccessEnv
from tests.fixtures.token_server import b64url_json
from tests.fixtures.tools import wait_until

pytestmark = pytest.mark.integration


def _api(env: AccessEnv, method: str, path: str, who: Credentials | None, **kwargs: object) -> httpx.Response:
    auth = (who.username, who.password) if who else None
    return httpx.request(method, f"{env.service.url}{path}", auth=auth, timeout=15, **kwargs)  # type: ignore[arg-type]


def test_a_token_login_cannot_take_over_the_account(access_env: AccessEnv) -> None:
    env = access_env
    user = env.user(f"tina{uuid.uuid4().hex[:6]}")
    soon = datetime.now(UTC) + timedelta(minutes=10)
    made = _api(env, "POST", f"/api/v1/admin/principals/{user.username}/tokens", user,
                json={"name": "short", "expires_at": soon.isoformat()})  # fmt: skip
    assert made.status_code == 201, made.text
    short = Credentials(user.username, made.json()["token"])
    # with the short-lived token: a new token lives no longer than it, whatever is asked
    for asked in ({}, {"expires_at": (soon + timedelta(days=365)).isoformat()}):
        child = _api(env, "POST", f"/api/v1/admin/principals/{user.username}/tokens", short, json=asked)
        assert child.status_code == 201, child.text
        assert datetime.fromisoformat(child.json()["expires_at"]) <= soon + timedelta(seconds=1)
    refused = _api(env, "PUT", f"/api/v1/admin/principals/{user.username}/password", short,
                   json={"password": "taken-over-now"})  # fmt: skip
    assert refused.status_code == 403 and "password login" in refused.json()["error"]["message"]
    changed = _api(env, "PUT", f"/api/v1/admin/principals/{user.username}/password", user,
                   json={"password": "a-new-password-1"})  # fmt: skip
    assert changed.status_code == 204


def test_a_robot_owning_a_namespace_outside_its_scope_manages_nothing(access_env: AccessEnv) -> None:
    env = access_env
    suffix = uuid.uuid4().hex[:6]
    inside, outside = f"in{suffix}", f"out{suffix}"
    env.namespace(inside, owner=env.admin.username)
    robot = env.robot(f"bot{suffix}", namespaces=[inside], grants={inside: "admin"})
    env.namespace(outside, owner=robot.username)  # owner, but outside its scope
    assert _api(env, "PUT", "/api/v1/admin/visibility", robot,
                json={"target": outside, "visibility": "public"}).status_code == 403  # fmt: skip
    widen = {"target": outside, "action": "admin", "principal": robot.username}
    assert _api(env, "POST", "/api/v1/admin/grants", robot, json=widen).status_code == 403
    assert _api(env, "PUT", "/api/v1/admin/visibility", robot,
                json={"target": inside, "visibility": "public"}).status_code == 204  # fmt: skip
    assert env.access(robot, f"repository:{outside}/x:pull,push") == []


def test_the_last_admin_cannot_be_disabled(access_env: AccessEnv) -> None:
    env = access_env
    with env.session() as session:
        admins = [p.name for p in accounts.list_principals(session) if p.is_admin and not p.disabled]
    assert admins == [env.admin.username]  # this module's service has one admin
    answer = _api(env, "POST", f"/api/v1/admin/principals/{admins[0]}/disable", env.admin)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "LAST_ADMIN"


def test_a_forged_node_assertion_is_refused_not_a_crash(access_env: AccessEnv, tmp_path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from ecr_oci.node_identity import public_key_pem

    env = access_env
    name = f"node-ed{uuid.uuid4().hex[:6]}"
    key = ed25519.Ed25519PrivateKey.generate()
    with env.session() as session:
        accounts.create_node(session, name, public_key=public_key_pem(key), actor="test")

    forged = ".".join(
        [b64url_json({"alg": "ES256", "typ": "JWT"}), b64url_json({"iss": name, "sub": name}), "c2ln"]
    )
    answer = env.token_response(Credentials(name, forged), "repository:a/b:pull")
    assert answer.status_code == 401
    me = _api(env, "GET", "/api/v1/me", Credentials(name, forged))
    assert me.status_code == 401


def test_a_nul_in_a_scope_cannot_erase_audit_entries(access_env: AccessEnv) -> None:
    env = access_env
    victim = f"ghost{uuid.uuid4().hex[:6]}"
    assert env.token_response(Credentials(victim, "guess-1")).status_code == 401
    sneaky = httpx.post(env.realm, data={"grant_type": "password", "scope": "repository:x\x00y:pull",
                                         "service": env.token_service}, timeout=10)  # fmt: skip
    assert sneaky.status_code == 200
    logins = _api(env, "GET", "/api/v1/admin/audit", env.admin, params={"action": "login", "actor": victim})
    assert [r["outcome"] for r in logins.json()["items"]] == ["failed"]


def test_activity_names_users_only_to_the_bundles_admins(access_env: AccessEnv) -> None:
    env = access_env
    repository = env.base.split("/", 1)[1].split(":")[0]  # base/busybox: public, owned by the admin
    namespace, name = repository.split("/")
    token = env.token(env.admin, f"repository:{repository}:pull")
    agent = f"activity-test/{uuid.uuid4().hex[:8]}"  # marks this pull among the repository's events
    pulled = env.registry_get(f"/v2/{repository}/manifests/1.36", token, **{"User-Agent": agent})
    assert pulled.status_code == 200, pulled.text

    def recent(who: Credentials | None) -> list[dict[str, object]]:
        answer = _api(env, "GET", f"/api/v1/bundles/{namespace}/{name}/activity", who)
        assert answer.status_code == 200, answer.text
        events: list[dict[str, object]] = answer.json()["recent"]
        return events

    # the registry notifies asynchronously but in order: once this pull is recorded, every earlier
    # event of the repository is too, and nothing else touches it, so both reads see the same events
    def recorded() -> list[dict[str, object]]:
        events = recent(env.admin)
        return events if any(e["user_agent"] == agent for e in events) else []

    as_admin = wait_until(recorded, timeout=20, what="the pull to be recorded")
    assert as_admin and any(e["actor"] for e in as_admin)
    public = recent(None)
    assert len(public) == len(as_admin)
    assert all(e["actor"] is None and e["source_addr"] is None and e["user_agent"] is None for e in public)
