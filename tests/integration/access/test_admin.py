"""The admin API and ``ecr-oci admin`` end to end, against a real ``ecr-oci serve`` with access
control on (no registry needed: nothing here pushes or pulls).

bootstrap → user, team, namespace, robot, grant and token through the CLI → ``GET /api/v1/me``;
a non-admin gets 403, anonymous 401, a wrong password 401 JSON; the audit log shows every change
and never a password or a token's secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecr_oci.devenv.service import LocalService
from tests.integration.conftest import Runner, make_runner

pytestmark = pytest.mark.integration

ANA_PASSWORD = "ana-correct-horse"
AUDITEE_PASSWORD = "auditee-battery-staple"


@dataclass
class Env:
    service: LocalService
    ecr: Runner
    home: Path
    admin_password: str
    host: str

    def api(
        self, method: str, path: str, *, auth: tuple[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return httpx.request(method, self.service.url + path, auth=auth, timeout=30, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("admin")
    service = LocalService(
        root / "service",
        registry="127.0.0.1:1",
        settings={
            "reconcile_interval": 0,
            "reconcile_on_start": False,
            "access_control": True,
            "token_key_file": str(root / "token" / "key.pem"),
            "token_cert_file": str(root / "token" / "cert.pem"),
        },
    )
    home = root / "home"
    ecr = make_runner(home, env={"DOCKER_CONFIG": str(home / ".docker"), "ECR_SERVICE_URL": service.url})
    service.start()
    try:
        done = ecr("admin", "bootstrap", "--config", str(service.config_path), "--name", "root")
        password = done.stdout.strip()
        assert len(password) >= 16 and "\n" not in password
        host = f"127.0.0.1:{service.port}"
        # the service answers the registry's /v2/ check, so `ecr-oci login SERVICE` stores the
        # credentials where `ecr-oci admin` looks for them
        ecr("login", host, "-u", "root", "--password-stdin", "--insecure", input=password)
        yield Env(service, ecr, home, password, host)
    finally:
        service.stop()


def _json(done: Any) -> Any:
    return json.loads(done.stdout)


def test_bootstrap_only_once(env: Env) -> None:
    again = env.ecr(
        "admin", "bootstrap", "--config", str(env.service.config_path), "--name", "x", check=False
    )
    assert again.returncode == 3
    assert again.stderr.count("\n") == 1 and "1 admin exists" in again.stderr and "root" not in again.stderr


def test_manage_through_the_cli_then_me(env: Env) -> None:
    ecr = env.ecr
    made = _json(ecr("admin", "user", "create", "ana", "--password-file", "-", "--json", input=ANA_PASSWORD))
    assert made["name"] == "ana" and "password" not in made and "password_hash" not in made
    ecr("admin", "user", "create", "bob")  # a generated password, on stdout
    ecr("admin", "team", "create", "devs")
    ecr("admin", "team", "add", "devs", "ana", "bob")
    ecr("admin", "namespace", "create", "waggle", "--owner", "ana")
    ecr("admin", "namespace", "create", "lab", "--visibility", "public")
    ecr("admin", "grant", "lab", "push", "--team", "devs")
    ecr("admin", "robot", "create", "ci-bot", "--namespace", "waggle", "--expires", "30d")
    ecr("admin", "node", "create", "node-1")
    ecr("admin", "grant", "waggle/hello", "pull", "--principal", "node-1")
    listed = _json(ecr("admin", "grants", "--json"))
    assert {"target": "waggle/hello", "action": "pull", "principal": "node-1", "team": None} in listed
    dup = ecr("admin", "team", "create", "devs", check=False)
    assert dup.returncode == 3 and "NAME_TAKEN" in dup.stderr

    # the owner manages her namespace with her own credentials: a grant and a robot token
    as_ana = ("--username", "ana", "--password-stdin")
    ecr("admin", "grant", "waggle", "push", "--principal", "ci-bot", *as_ana, input=ANA_PASSWORD)
    token = _json(ecr("admin", "token", "create", "ci-bot", "--json", *as_ana, input=ANA_PASSWORD))
    assert token["token"].startswith(f"ecr_{token['id']}_")

    me = env.api("GET", "/api/v1/me", auth=("ana", ANA_PASSWORD)).json()
    assert me == {"name": "ana", "kind": "user", "admin": False, "teams": ["devs"],
                  "namespaces": {"lab": "push", "waggle": "admin"}}  # fmt: skip
    robot = env.api("GET", "/api/v1/me", auth=("ci-bot", token["token"])).json()
    assert robot["kind"] == "robot" and robot["namespaces"] == {"waggle": "push"}
    who = _json(ecr("admin", "whoami", "--json"))
    assert who["name"] == "root" and who["admin"] is True
    assert env.api("GET", "/api/v1/me").json()["name"] is None


def test_non_admin_is_forbidden(env: Env) -> None:
    env.ecr("admin", "user", "create", "eve", "--password-file", "-", input="eve-password")
    answer = env.api("POST", "/api/v1/admin/teams", json={"name": "evil"}, auth=("eve", "eve-password"))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "FORBIDDEN"
    answer = env.api("GET", "/api/v1/admin/audit", auth=("eve", "eve-password"))
    assert answer.status_code == 403
    done = env.ecr(
        "admin", "namespace", "create", "evil", "--username", "eve", "--password-stdin",
        input="eve-password", check=False,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("error: not allowed")


def test_login_checks_the_password(env: Env, tmp_path: Path) -> None:
    other = make_runner(tmp_path / "home", env={"DOCKER_CONFIG": str(tmp_path / "docker")})
    wrong = other(
        "login", env.host, "-u", "root", "--password-stdin", "--insecure", input="nope", check=False
    )
    assert wrong.returncode != 0 and not (tmp_path / "docker" / "config.json").exists()


def test_anonymous_and_wrong_password(env: Env, tmp_path: Path) -> None:
    answer = env.api("POST", "/api/v1/admin/users", json={"name": "x1", "password": "12345678"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "UNAUTHORIZED"
    wrong = env.api("GET", "/api/v1/admin/principals", auth=("root", "not-the-password"))
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/json")
    assert wrong.json()["error"]["code"] == "UNAUTHORIZED"
    nobody = make_runner(tmp_path / "home", env={"DOCKER_CONFIG": str(tmp_path / "none")})
    done = nobody("admin", "team", "list", "--service", env.service.url, check=False)
    assert done.returncode == 1 and "log in with `ecr-oci login" in done.stderr
    assert done.stderr.count("\n") == 1


def test_audit_shows_changes_and_no_secret(env: Env) -> None:
    # its own user with a password, and its own grant, so it holds when run alone (`-k audit`)
    env.ecr("admin", "user", "create", "auditee", "--password-file", "-", input=AUDITEE_PASSWORD)
    env.ecr("admin", "namespace", "create", "audited-ns")
    env.ecr("admin", "grant", "audited-ns", "pull", "--principal", "auditee")
    env.ecr("admin", "team", "create", "audited")
    env.api("GET", "/api/v1/me", auth=("root", "wrong-password-here"))
    page = _json(env.ecr("admin", "audit", "--limit", "1000", "--json"))
    actions = {(r["actor"], r["action"], r["target"]) for r in page["items"]}
    assert ("root", "team.create", "audited") in actions
    assert ("root", "user.create", "auditee") in actions
    assert (None, "user.create", "root") in actions
    grants = _json(env.ecr("admin", "audit", "--action", "grant", "--json"))
    assert grants["items"] and {r["action"] for r in grants["items"]} <= {"grant.add", "grant.remove"}
    first = _json(env.ecr("admin", "audit", "--limit", "2", "--json"))
    second = _json(env.ecr("admin", "audit", "--limit", "2", "--cursor", first["next_cursor"], "--json"))
    assert {r["id"] for r in first["items"]}.isdisjoint(r["id"] for r in second["items"])
    assert max(r["id"] for r in second["items"]) < min(r["id"] for r in first["items"])
    body = json.dumps(page)
    secrets = (env.admin_password, AUDITEE_PASSWORD, ANA_PASSWORD, "eve-password", "wrong-password-here")
    for secret in (*secrets, "$argon2"):
        assert secret not in body
