"""Real clients against a token-auth registry whose token server is ``ecr-oci serve`` (issue 5).

- a CI robot pushes with its API token: ``ecr-oci push --authfile`` and ``skopeo copy --dest-creds``;
- a node pulls a private bundle with its token: ``podman pull --creds`` and ``ctr pull --user``
  (containerd POSTs the OAuth2 password form first, REFERENCE.md) — and without the token, or with
  another node's, the same pulls fail;
- anyone pulls a public bundle anonymously (``skopeo inspect`` with no credentials);
- ``ecr-oci login`` checks and stores credentials where ``push`` finds them; a wrong password is
  one line on stderr.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_oci.devenv import CommandError, PodmanEnv
from ecr_oci.oci.auth import Credentials
from tests.fixtures.access import AccessEnv
from tests.fixtures.tools import need
from tests.integration.conftest import Runner, make_runner, write_bundle

pytestmark = pytest.mark.integration

EXPECTED_LINE = "hello from hello-sensor: model 262144 bytes (md5 d95d4226), interval 30s"


def _bundle(directory: Path, env: AccessEnv, *, namespace: str, name: str) -> Path:
    made = write_bundle(directory, base=env.base, name=name)
    spec = made / "ecr.yaml"
    spec.write_text(re.sub(r"(?m)^  namespace: .*$", f"  namespace: {namespace}", spec.read_text()))
    return made


def _creds(credentials: Credentials) -> str:
    return f"{credentials.username}:{credentials.password}"


@pytest.fixture(scope="module")
def world(access_env: AccessEnv, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Namespaces ``fleet`` (private) and ``open`` (public); a robot that pushes to both; a node
    granted pull on ``fleet/hello-private``, another node without grants; the private bundle pushed
    by the robot with ``ecr-oci push``."""
    env = access_env
    env.namespace("fleet", owner=env.admin.username, visibility="private")
    env.namespace("open", owner=env.admin.username, visibility="public")
    robot = env.robot("ci-bot", namespaces=["fleet", "open"], grants={"fleet": "push", "open": "push"})
    node = env.node("node-007", grants={"fleet/hello-private": "pull"})
    other = env.node("node-008")
    work = tmp_path_factory.mktemp("flows")
    ecr = make_runner(work / "home")
    authfile = env.authfile(robot, work / "robot-auth")
    directory = _bundle(work / "private", env, namespace="fleet", name="hello-private")
    done = ecr("push", str(directory), "--registry", env.registry.host, "--insecure", "--json",
               "--authfile", str(authfile))  # fmt: skip
    pushed = json.loads(done.stdout)
    return {"robot": robot, "node": node, "other": other, "ecr": ecr, "work": work, "pushed": pushed,
            "authfile": authfile, "ref": f"{env.registry.host}/fleet/hello-private:0.1.0"}  # fmt: skip


def test_robot_pushes_with_ecr_oci(world, access_env):
    assert world["pushed"]["image"].startswith(
        f"{access_env.registry.host}/fleet/hello-private:0.1.0@sha256:"
    )
    # the same push again: nothing to upload, and still allowed
    done = world["ecr"]("push", str(world["work"] / "private"), "--registry", access_env.registry.host,
                        "--insecure", "--authfile", str(world["authfile"]))  # fmt: skip
    assert done.stdout.startswith("unchanged ")


def test_robot_pushes_with_skopeo_copy(world, access_env, skopeo):
    target = f"docker://{access_env.registry.host}/open/copied:1"
    skopeo("copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
           "--dest-creds", _creds(world["robot"]), f"docker://{access_env.base}", target)  # fmt: skip
    out = json.loads(skopeo("inspect", "--tls-verify=false", "--no-creds", target))
    assert out["Name"].endswith("/open/copied")


def test_robot_cannot_push_outside_its_scope(world, access_env, skopeo):
    with pytest.raises(CommandError):
        skopeo("copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
               "--dest-creds", _creds(world["robot"]), f"docker://{access_env.base}",
               f"docker://{access_env.registry.host}/base/hijacked:1")  # fmt: skip


def test_anonymous_skopeo_inspect_of_a_public_bundle(world, access_env, tmp_path, skopeo):
    ecr = world["ecr"]
    directory = _bundle(tmp_path / "public", access_env, namespace="open", name="hello-public")
    ecr("push", str(directory), "--registry", access_env.registry.host, "--insecure",
        "--authfile", str(world["authfile"]))  # fmt: skip
    out = skopeo("inspect", "--tls-verify=false", "--no-creds",
                 f"docker://{access_env.registry.host}/open/hello-public:0.1.0")  # fmt: skip
    assert json.loads(out)["Labels"]["org.opencontainers.image.version"] == "0.1.0"


def test_anonymous_skopeo_inspect_of_the_private_bundle_fails(world, skopeo):
    with pytest.raises(CommandError) as failed:
        skopeo("inspect", "--tls-verify=false", "--no-creds", f"docker://{world['ref']}")
    assert "unauthorized" in failed.value.stderr.lower() or "authentication" in failed.value.stderr.lower()


@pytest.fixture
def node_podman(tmp_path: Path, access_env: AccessEnv) -> Iterator[PodmanEnv]:
    need("podman")
    need("runc")
    env = PodmanEnv(tmp_path / "podman", insecure_registries=[access_env.registry.host])
    yield env
    env.remove_all()


def test_podman_pulls_the_private_bundle_only_with_the_node_token(world, node_podman):
    ref = world["ref"]
    for args in ([], ["--creds", _creds(world["other"])]):
        refused = node_podman.run(["pull", "--quiet", *args, ref], check=False)
        assert refused.returncode != 0, refused.stdout
        assert "unauthorized" in refused.stderr.lower() or "authentication required" in refused.stderr.lower()
    node_podman.run(["pull", "--quiet", "--creds", _creds(world["node"]), ref])
    assert node_podman.run_image(ref).strip() == EXPECTED_LINE


def test_containerd_pulls_the_private_bundle_only_with_the_node_token(world, containerd):
    ref = world["ref"]
    with pytest.raises(CommandError):
        containerd.pull(ref)
    with pytest.raises(CommandError):
        containerd.pull(ref, user=_creds(world["other"]))
    containerd.pull(ref, user=_creds(world["node"]))  # ctr POSTs grant_type=password first
    assert ref in containerd.images()


def test_login_then_push(access_env, tmp_path):
    env = access_env
    env.namespace("ana", owner=None, visibility="private")
    ana = env.user("ana")
    env.grant("ana", "push", principal="ana")
    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"auths": {"other.example:5000": {"auth": "eDp5"}},
                                                           "credHelpers": {"gcr.io": "gcloud"}}))  # fmt: skip
    ecr: Runner = make_runner(tmp_path / "home", env={"DOCKER_CONFIG": str(docker_config)})
    done = ecr("login", env.registry.host, "--username", "ana", "--password-stdin", "--insecure",
               input=ana.password + "\n")  # fmt: skip
    assert "Login succeeded" in done.stdout and ana.password not in done.stdout + done.stderr
    config_path = docker_config / "config.json"
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600
    stored = json.loads(config_path.read_text())
    assert set(stored["auths"]) == {"other.example:5000", env.registry.host}
    assert stored["credHelpers"] == {"gcr.io": "gcloud"}
    directory = _bundle(tmp_path / "b", env, namespace="ana", name="hello-ana")
    pushed = ecr("push", str(directory), "--registry", env.registry.host, "--insecure")
    assert pushed.stdout.startswith(f"pushed {env.registry.host}/ana/hello-ana:0.1.0@sha256:")

    ecr("logout", env.registry.host)
    assert set(json.loads(config_path.read_text())["auths"]) == {"other.example:5000"}
    directory2 = _bundle(tmp_path / "b2", env, namespace="ana", name="hello-ana2")
    refused = ecr("push", str(directory2), "--registry", env.registry.host, "--insecure", check=False)
    assert refused.returncode != 0


def test_login_with_a_wrong_password_is_one_line(access_env, tmp_path):
    ecr = make_runner(tmp_path / "home", env={"DOCKER_CONFIG": str(tmp_path / "docker")})
    done = ecr("login", access_env.registry.host, "-u", access_env.admin.username, "--password-stdin",
               "--insecure", input="not-the-password\n", check=False)  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: login to {access_env.registry.host} failed")
    assert "not-the-password" not in done.stderr
    assert not (tmp_path / "docker" / "config.json").exists()


def test_node_logs_in_with_its_own_key(world, access_env, node_podman, tmp_path):
    """Key-based node identity: ``ecr-oci node keygen`` on the node, the public key registered by
    the admin, ``ecr-oci node credential`` writes a signed assertion into the auth file, podman
    pulls the private bundle with it. Another key, another node's name, a stale assertion, the
    wrong audience and a key-less node are all refused by the token endpoint."""
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization

    from ecr_oci.node_identity import make_assertion
    from ecr_oci.server.services import accounts

    env = access_env
    ecr = world["ecr"]
    public = ecr("node", "keygen", "--out", str(tmp_path / "node.key")).stdout
    ecr("node", "keygen", "--out", str(tmp_path / "other.key"))
    with env.session() as session:
        accounts.create_node(session, "node-keyed", public_key=public, actor="test")
        accounts.grant(session, "fleet/hello-private", "pull", principal="node-keyed", actor="test")
    authfile = tmp_path / "node-auth" / "config.json"
    ecr("node", "credential", "--key", str(tmp_path / "node.key"), "--name", "node-keyed",
        "--registry", env.registry.host, "--insecure", "--authfile", str(authfile))  # fmt: skip
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    ref = world["ref"]
    node_podman.run(["pull", "--quiet", "--authfile", str(authfile), ref])
    assert node_podman.run_image(ref).strip() == EXPECTED_LINE

    def key(name: str):
        return serialization.load_pem_private_key((tmp_path / name).read_bytes(), password=None)

    scope = "repository:fleet/hello-private:pull"
    good = make_assertion(key("node.key"), "node-keyed", audience=env.token_service, ttl=300)
    assert env.access(Credentials("node-keyed", good), scope) == [
        {"type": "repository", "name": "fleet/hello-private", "actions": ["pull"]}
    ]
    now = int(time.time())
    stale = jwt.encode(
        {
            "iss": "node-keyed",
            "sub": "node-keyed",
            "aud": env.token_service,
            "iat": now - 900,
            "exp": now - 600,
        },
        key("node.key"),
        algorithm="ES256",
    )
    refused = {
        "another key": Credentials(
            "node-keyed", make_assertion(key("other.key"), "node-keyed", audience=env.token_service)
        ),
        "another node's name": Credentials("node-007", good),
        "stale": Credentials("node-keyed", stale),
        "wrong audience": Credentials(
            "node-keyed", make_assertion(key("node.key"), "node-keyed", audience="other")
        ),
        "a node without a key": Credentials(
            "node-008", make_assertion(key("node.key"), "node-008", audience=env.token_service)
        ),
    }
    for why, credentials in refused.items():
        assert env.token_response(credentials, scope).status_code == 401, why
