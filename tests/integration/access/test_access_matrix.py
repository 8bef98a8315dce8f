"""The access matrix of issue 5: principals x visibility x actions, every cell asserted against the
real token-auth registry and the real service, and every answer to an unauthorised principal
scanned for the private bundle's name, description and digests.

The expected table is written out below, not derived from the code under test. Registry answers
to a denied request echo the repository name the client itself sent (distribution's error detail,
for a missing repository the same), so registry bodies are compared with the answer for a
repository that does not exist instead: a private bundle must be indistinguishable from a missing
one. The service's bodies must not contain the name at all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ecr_oci.digest import Digest
from ecr_oci.mediatypes import MANIFEST_ACCEPT, MediaType
from ecr_oci.oci.auth import Credentials
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.server.services import accounts
from tests.fixtures.access import AccessEnv
from tests.integration.conftest import write_bundle

pytestmark = pytest.mark.timeout(600)

PRINCIPALS = (
    "anonymous",
    "owner",
    "other_user",
    "team_member",
    "robot_in_scope",
    "robot_out_of_scope",
    "granted_node",
    "other_node",
    "admin",
)
ACTIONS = ("pull", "push", "delete", "tag_list", "catalog", "referrers", "search", "detail", "activity")
READ = frozenset({"pull", "tag_list", "referrers", "search", "detail", "activity"})

#: (principal, visibility) -> the actions allowed. Everything else must be refused.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("anonymous", "public"): READ,
    ("anonymous", "private"): frozenset(),
    ("owner", "public"): READ | {"push", "delete"},
    ("owner", "private"): READ | {"push", "delete"},
    ("other_user", "public"): READ,
    ("other_user", "private"): frozenset(),
    ("team_member", "public"): READ | {"push"},
    ("team_member", "private"): READ | {"push"},
    ("robot_in_scope", "public"): READ | {"push"},
    ("robot_in_scope", "private"): READ | {"push"},
    ("robot_out_of_scope", "public"): READ,
    ("robot_out_of_scope", "private"): frozenset(),
    ("granted_node", "public"): READ,
    ("granted_node", "private"): READ,
    ("other_node", "public"): READ,
    ("other_node", "private"): frozenset(),
    ("admin", "public"): READ | {"push", "delete", "catalog"},
    ("admin", "private"): READ | {"push", "delete", "catalog"},
}


@dataclass
class Bundle:
    repository: str
    tag: str
    marker: str
    image_digest: str
    secrets: set[str] = field(default_factory=set)

    @property
    def namespace(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]


@dataclass
class Matrix:
    env: AccessEnv
    who: dict[str, Credentials | None]
    bundles: dict[str, Bundle]
    missing: str


def _push(env: AccessEnv, tmp: Path, credentials: Credentials, namespace: str, name: str, marker: str) -> str:
    directory = write_bundle(tmp / name, base=env.base, name=name, version="1.0.0")
    spec = directory / "ecr.yaml"
    text = re.sub(r"(?m)^  namespace: .*$", f"  namespace: {namespace}", spec.read_text())
    text = re.sub(r"(?m)^  description: .*$", f'  description: "Detector {marker} for the matrix"', text)
    spec.write_text(text)
    authfile = env.authfile(credentials, tmp / f"auth-{name}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecr_oci",
            "push",
            str(directory),
            "--registry",
            env.registry.host,
            "--insecure",
            "--authfile",
            str(authfile),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    digest: str = json.loads(done.stdout)["imageDigest"]
    return digest


def _secrets_of(env: AccessEnv, bundle: Bundle) -> set[str]:
    """The private bundle's name, description marker and every digest it has in the registry."""
    found = {bundle.repository, bundle.name, bundle.marker, bundle.image_digest}
    token = env.token(env.admin, f"repository:{bundle.repository}:pull")
    for tag in env.registry_get(f"/v2/{bundle.repository}/tags/list", token).json()["tags"]:
        response = env.registry_get(f"/v2/{bundle.repository}/manifests/{tag}", token, Accept=MANIFEST_ACCEPT)
        found.add(str(Digest.of(response.content)))
        found.update(re.findall(r"sha256:[0-9a-f]{64}", response.text))
    found.discard(str(Digest.of(b"{}")))  # the empty config blob: the same in every artifact
    return found


@pytest.fixture(scope="module")
def matrix(access_env: AccessEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    env = access_env
    tmp = tmp_path_factory.mktemp("matrix")
    suffix = uuid.uuid4().hex[:6]
    namespace, elsewhere = f"acme{suffix}", f"else{suffix}"
    owner = env.user(f"olive{suffix}")
    env.namespace(namespace, owner=owner.username, visibility="private")
    env.namespace(elsewhere, owner=env.admin.username, visibility="private")
    member = env.user(f"mia{suffix}")
    with env.session() as session:
        accounts.create_team(session, f"devs{suffix}", actor="test")
        accounts.add_member(session, f"devs{suffix}", member.username, actor="test")
    env.grant(namespace, "push", team=f"devs{suffix}")
    bundles: dict[str, Bundle] = {}
    for visibility in ("public", "private"):
        name = f"{visibility[:4]}-{suffix}"
        marker = f"zq{uuid.uuid4().hex[:10]}"
        digest = _push(env, tmp, owner, namespace, name, marker)
        bundles[visibility] = Bundle(f"{namespace}/{name}", "1.0.0", marker, digest)
    with env.session() as session:
        accounts.set_visibility(session, bundles["public"].repository, "public", actor="test")
    who: dict[str, Credentials | None] = {
        "anonymous": None,
        "owner": owner,
        "other_user": env.user(f"zed{suffix}"),
        "team_member": member,
        "robot_in_scope": env.robot(f"ci-in{suffix}", namespaces=[namespace], grants={namespace: "push"}),
        "robot_out_of_scope": env.robot(
            f"ci-out{suffix}", namespaces=[elsewhere], grants={elsewhere: "push"}
        ),
        "granted_node": env.node(f"node-a{suffix}", grants={bundles["private"].repository: "pull"}),
        "other_node": env.node(f"node-b{suffix}"),
        "admin": env.admin,
    }
    # wait until the service indexed both versions
    admin_auth = (env.admin.username, env.admin.password)
    for bundle in bundles.values():
        for _ in range(100):
            found = httpx.get(
                f"{env.service.url}/api/v1/bundles/{bundle.repository}", auth=admin_auth, timeout=10
            )
            if found.status_code == 200 and found.json().get("versions"):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"{bundle.repository} was not indexed: {found.status_code} {found.text[:200]}")
    bundles["private"].secrets = _secrets_of(env, bundles["private"])
    yield Matrix(env, who, bundles, f"{namespace}/missing-{suffix}")


# -- one function per action: (allowed?, the responses seen) -----------------------------------------


def _registry_token(m: Matrix, who: str, scope: str) -> str | None:
    credentials = m.who[who]
    return m.env.token(credentials, scope)


def _service(m: Matrix, who: str, path: str, **params: str) -> httpx.Response:
    credentials = m.who[who]
    auth = (credentials.username, credentials.password) if credentials else None
    return httpx.get(f"{m.env.service.url}{path}", params=params, auth=auth, timeout=10)


def _pull(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    token = _registry_token(m, who, f"repository:{repo}:pull")
    response = m.env.registry_get(f"/v2/{repo}/manifests/{b.tag}", token, Accept=MANIFEST_ACCEPT)
    return response.status_code == 200, [response]


def _tag_list(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    token = _registry_token(m, who, f"repository:{repo}:pull")
    response = m.env.registry_get(f"/v2/{repo}/tags/list", token)
    return response.status_code == 200 and b.tag in response.json().get("tags", []), [response]


def _catalog(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    token = _registry_token(m, who, "registry:catalog:*")
    response = m.env.registry_get("/v2/_catalog?n=1000", token)
    listed = response.status_code == 200 and repo in response.json().get("repositories", [])
    return listed, [response]


def _push_tag(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    """PUT the version's own manifest under a new tag (its blobs are in the repository)."""
    admin_token = m.env.token(m.env.admin, f"repository:{repo}:pull")
    manifest = m.env.registry_get(f"/v2/{repo}/manifests/{b.tag}", admin_token, Accept=MANIFEST_ACCEPT)
    media_type = manifest.headers.get("Content-Type", MediaType.OCI_INDEX)
    token = _registry_token(m, who, f"repository:{repo}:pull,push")
    headers = {"Content-Type": media_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.put(
        f"{m.env.registry.url}/v2/{repo}/manifests/matrix-{who.replace('_', '-')}",
        content=manifest.content,
        headers=headers,
        timeout=10,
    )
    return response.status_code == 201, [response]


def _delete(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    """DELETE a throwaway manifest the admin pushed for this cell (never the version itself)."""
    with RegistryClient(m.env.registry.host, insecure=True, credentials=m.env.admin) as admin:
        config = admin.push_blob_bytes(repo, b"{}")
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": str(MediaType.OCI_MANIFEST),
                "artifactType": "application/vnd.example.throwaway",
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": str(config.digest),
                    "size": 2,
                },
                "layers": [],
                "annotations": {"cell": f"{who}-{uuid.uuid4().hex}"},
            }
        ).encode()
        digest = Digest.of(body)
        admin.put_manifest(repo, str(digest), body, str(MediaType.OCI_MANIFEST))
    token = _registry_token(m, who, f"repository:{repo}:delete")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.delete(f"{m.env.registry.url}/v2/{repo}/manifests/{digest}", headers=headers, timeout=10)
    return response.status_code == 202, [response]


def _referrers(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    response = _service(m, who, f"/v2/{repo}/referrers/{b.image_digest}")
    return response.status_code == 200 and bool(response.json().get("manifests")), [response]


def _search(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    response = _service(m, who, "/api/v1/search", q=b.marker)
    items = response.json().get("items", []) if response.status_code == 200 else []
    names = {item.get("repository") for item in items}
    return repo in names, [response]


def _detail(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    response = _service(m, who, f"/api/v1/bundles/{repo}")
    return response.status_code == 200, [response]


def _activity(m: Matrix, who: str, repo: str, b: Bundle) -> tuple[bool, list[httpx.Response]]:
    response = _service(m, who, f"/api/v1/bundles/{repo}/activity")
    return response.status_code == 200, [response]


CHECKS: dict[str, Callable[[Matrix, str, str, Bundle], tuple[bool, list[httpx.Response]]]] = {
    "pull": _pull,
    "push": _push_tag,
    "delete": _delete,
    "tag_list": _tag_list,
    "catalog": _catalog,
    "referrers": _referrers,
    "search": _search,
    "detail": _detail,
    "activity": _activity,
}
REGISTRY_ACTIONS = {"pull", "push", "delete", "tag_list", "catalog"}


@pytest.mark.parametrize("visibility", ["public", "private"])
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("principal", PRINCIPALS)
def test_cell(matrix: Matrix, principal: str, action: str, visibility: str) -> None:
    bundle = matrix.bundles[visibility]
    allowed, responses = CHECKS[action](matrix, principal, bundle.repository, bundle)
    expected = action in EXPECTED[(principal, visibility)]
    assert allowed == expected, (
        f"{principal} {action} {visibility}: {'allowed' if allowed else 'refused'}, expected "
        f"{'allowed' if expected else 'refused'}; {[(r.status_code, r.text[:200]) for r in responses]}"
    )
    if expected or visibility != "private":
        return
    secrets = matrix.bundles["private"].secrets
    for response in responses:
        body = response.text
        if action in REGISTRY_ACTIONS:
            # the registry echoes the requested name in its error detail: no more than for a
            # repository that does not exist
            body = body.replace(bundle.repository, "<asked>")
        leaked = sorted(s for s in secrets if s in body)
        assert not leaked, f"{principal} {action}: the answer carries {leaked}: {response.text[:300]}"
    if action in ("detail", "activity", "referrers", "pull", "tag_list"):
        _, missing = CHECKS[action](matrix, principal, matrix.missing, bundle)
        for seen, absent in zip(responses, missing, strict=True):
            assert seen.status_code == absent.status_code
            assert seen.text.replace(bundle.repository, "<x>") == absent.text.replace(matrix.missing, "<x>")


def test_audit_shows_logins_tokens_and_pushes(matrix: Matrix) -> None:
    """Admins query one log: failed and good logins, tokens with their granted scopes, the owner's
    push (from the registry's notification, actor = the token's subject), and no secret."""
    env = matrix.env
    owner = matrix.who["owner"]
    assert owner is not None
    assert env.token_response(Credentials(owner.username, "not-the-password")).status_code == 401
    admin = (env.admin.username, env.admin.password)

    def records(**params: str) -> list[dict[str, object]]:
        response = httpx.get(f"{env.service.url}/api/v1/admin/audit", params=params, auth=admin, timeout=10)
        assert response.status_code == 200, response.text
        items: list[dict[str, object]] = response.json()["items"]
        return items

    logins = records(action="login", actor=owner.username)
    assert {r["outcome"] for r in logins} >= {"ok", "failed"}
    pushes = [
        r
        for r in records(action="push", actor=owner.username)
        if str(r["target"]).startswith(matrix.bundles["private"].repository)
    ]
    assert pushes, "the owner's push of the private bundle is not in the audit log"
    tokens = records(action="token", actor=owner.username)
    assert any("push" in str(r["target"]) for r in tokens)
    everything = json.dumps(records(limit="500"))
    for credentials in matrix.who.values():
        if credentials is not None:
            assert credentials.password not in everything
    # a non-admin may not read it, and anonymous is asked to log in
    other = matrix.who["other_user"]
    assert other is not None
    denied = httpx.get(
        f"{env.service.url}/api/v1/admin/audit", auth=(other.username, other.password), timeout=10
    )
    assert denied.status_code == 403
    assert httpx.get(f"{env.service.url}/api/v1/admin/audit", timeout=10).status_code == 401


def test_cli_search_finds_a_private_bundle_only_with_credentials(matrix: Matrix, tmp_path: Path) -> None:
    """``ecr-oci search`` and ``show`` send the credentials stored for the service's host (as
    ``ecr-oci login SERVICE`` writes them); without them the private bundle does not exist."""
    import base64

    env, bundle = matrix.env, matrix.bundles["private"]
    owner = matrix.who["owner"]
    assert owner is not None
    host = env.service.url.removeprefix("http://")
    pair = base64.b64encode(f"{owner.username}:{owner.password}".encode()).decode()
    logged_in = tmp_path / "auth.json"
    logged_in.write_text(json.dumps({"auths": {host: {"auth": pair}}}))
    nobody = tmp_path / "empty.json"
    nobody.write_text("{}")

    def ecr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ecr_oci", *args, "--service", env.service.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    found = ecr("search", bundle.marker, "--json", "--authfile", str(logged_in))
    assert found.returncode == 0, found.stderr
    assert [i["repository"] for i in json.loads(found.stdout)["items"]] == [bundle.repository]
    hidden = ecr("search", bundle.marker, "--json", "--authfile", str(nobody))
    assert hidden.returncode == 0 and json.loads(hidden.stdout)["items"] == []
    shown = ecr("show", bundle.repository, "--authfile", str(logged_in))
    assert shown.returncode == 0 and bundle.marker in shown.stdout
    missing = ecr("show", bundle.repository, "--authfile", str(nobody))
    assert (
        missing.returncode == 1 and bundle.name not in missing.stderr and "no such bundle" in missing.stderr
    )
