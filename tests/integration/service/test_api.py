"""The search API and the OCI referrers route of a real ``ecr-oci serve`` over HTTP, after real
pushes (notifications on), on SQLite and PostgreSQL; bad input from schemathesis and by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from ecr_oci.bundle.push import PushResult, push_bundle
from ecr_oci.digest import Digest
from ecr_oci.oci.referrers import list_referrers
from ecr_oci.oci.registry import RegistryClient
from tests.fixtures.service import ServiceEnv
from tests.fixtures.tools import wait_until
from tests.integration.conftest import write_bundle

pytestmark = pytest.mark.integration

BUNDLE_TYPE = "application/vnd.waggle.ecr.bundle.v1"


class Pushed:
    """A bundle this module pushed: its repository, unique description word and push result."""

    def __init__(self, repository: str, word: str, result: PushResult) -> None:
        self.repository = repository
        self.word = word
        self.result = result

    @property
    def image_digest(self) -> str:
        return str(self.result.image_digest)


def _api(env: ServiceEnv, path: str, **params: Any) -> httpx.Response:
    return httpx.get(env.service.url + path, params=params, timeout=30)


def _wait_indexed(env: ServiceEnv, word: str) -> dict[str, Any]:
    def indexed() -> dict[str, Any] | None:
        page: dict[str, Any] = _api(env, "/api/v1/search", q=word).json()
        return page if page["items"] and page["items"][0]["bundle_digest"] else None

    return wait_until(indexed, timeout=20, what=f"the bundle with {word!r} to be indexed")


def _push(env: ServiceEnv, work: Path, word: str) -> Pushed:
    """Push a copy of the example bundle whose description holds ``word``; wait until indexed."""
    name = f"apitest-{uuid.uuid4().hex[:8]}"
    directory = write_bundle(work / name, base=env.base, name=name)
    spec = directory / "ecr.yaml"
    spec.write_text(
        re.sub(r"(?m)^  description: .*$", f'  description: "Counts {word} in a tank."', spec.read_text())
    )
    with RegistryClient(env.registry.host, insecure=True) as client:
        result = push_bundle(directory, registry=env.registry.host, connect=lambda _host: client)
    _wait_indexed(env, word)
    return Pushed(f"waggle/{name}", word, result)


@pytest.fixture(scope="module")
def pushed(service_env: ServiceEnv, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    """One bundle pushed through the registry (notifications index it), with a unique word in its
    description."""
    return _push(service_env, tmp_path_factory.mktemp("api"), f"zebrafish{uuid.uuid4().hex[:6]}")


def test_search_finds_the_pushed_bundle_by_a_description_word(
    service_env: ServiceEnv, pushed: Pushed
) -> None:
    page = _api(service_env, "/api/v1/search", q=pushed.word.upper()).json()
    assert [i["repository"] for i in page["items"]] == [pushed.repository]
    item = page["items"][0]
    assert item["version"] == "0.1.0" and item["platforms"] == ["linux/amd64"]
    assert item["image_digest"] == pushed.image_digest and item["requirements"] == ["busybox>=1.36"]
    assert item["score"] > 0 and page["next_cursor"] is None


def test_filters_by_platform_and_requirement(service_env: ServiceEnv, pushed: Pushed) -> None:
    def hits(**params: str) -> list[str]:
        return [
            i["repository"]
            for i in _api(service_env, "/api/v1/search", q=pushed.word, **params).json()["items"]
        ]

    assert hits(platform="linux/amd64") == [pushed.repository]
    assert hits(platform="linux/arm64") == []
    assert hits(requirement="busybox") == [pushed.repository]
    assert hits(requirement="pytorch") == []
    assert hits(namespace="waggle", license="MIT", keyword="sensor") == [pushed.repository]


def test_bundle_version_layers_and_referrers(service_env: ServiceEnv, pushed: Pushed) -> None:
    ns, name = pushed.repository.split("/")
    bundle = _api(service_env, f"/api/v1/bundles/{ns}/{name}").json()
    assert [v["version"] for v in bundle["versions"]] == ["0.1.0"]
    assert bundle["versions"][0]["total_size"] > 0
    version = _api(service_env, f"/api/v1/bundles/{ns}/{name}/versions/0.1.0").json()
    assert {layer["role"] for layer in version["layers"]} >= {"code", "model", "base"}
    assert all(layer["size"] > 0 and layer["digest"].startswith("sha256:") for layer in version["layers"])
    assert [r["artifact_type"] for r in version["referrers"] if r["kind"] == "bundle"] == [BUNDLE_TYPE]
    assert version["config"]["spec"]["metadata"]["name"] == name
    referrers = _api(service_env, f"/api/v1/referrers/{ns}/{name}/{pushed.image_digest}").json()
    assert BUNDLE_TYPE in {r["artifact_type"] for r in referrers["items"]}
    activity = _api(service_env, f"/api/v1/bundles/{ns}/{name}/activity").json()
    assert activity["pulls"][0]["version"] == "0.1.0"
    assert any(e["action"] == "push" for e in activity["recent"])


def test_oci_referrers_endpoint(service_env: ServiceEnv, pushed: Pushed) -> None:
    url = f"{service_env.service.url}/v2/{pushed.repository}/referrers/{pushed.image_digest}"
    response = httpx.get(url, headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.oci.image.index.v1+json")
    index = response.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    bundle = [d for d in index["manifests"] if d.get("artifactType") == BUNDLE_TYPE]
    assert len(bundle) == 1 and set(bundle[0]) >= {"mediaType", "digest", "size", "artifactType"}
    assert "OCI-Filters-Applied" not in response.headers
    filtered = httpx.get(url, params={"artifactType": BUNDLE_TYPE})
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [bundle[0]["digest"]]
    # the library's own referrers client, pointed at the service as if it were the registry
    host = service_env.service.url.removeprefix("http://")
    with RegistryClient(host, insecure=True) as client:
        found = list_referrers(
            client, pushed.repository, Digest.parse(pushed.image_digest), artifact_type=BUNDLE_TYPE
        )
    assert [str(d.digest) for d in found] == [bundle[0]["digest"]]


def test_cli_search_and_show(service_env: ServiceEnv, pushed: Pushed) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ecr_oci", *args, "--service", service_env.service.url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = cli("search", pushed.word, "--platform", "linux/amd64", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"][0]["repository"] == pushed.repository
    table = cli("search", pushed.word)
    assert table.returncode == 0 and f"{pushed.repository}:0.1.0" in table.stdout
    show = cli("show", f"{pushed.repository}:0.1.0")
    assert show.returncode == 0 and "model" in show.stdout and pushed.image_digest in show.stdout
    shown = json.loads(cli("show", pushed.repository, "--json").stdout)
    assert shown["versions"][0]["version"] == "0.1.0"
    missing = cli("show", "nope/nothing")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "NOT_FOUND" in missing.stderr
    bad = cli("search", "x", "--signed-by", "nothex")
    assert bad.returncode == 2 and "BAD_PARAMETER" in bad.stderr


# --- bad input -------------------------------------------------------------------------------------


def _json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJ2IjoxfQ"},
        {"limit": "0"},
        {"limit": "1000"},
        {"limit": "ten"},
        {"sort": "random"},
        {"platform": "linux"},
        {"signed_by": "xyz"},
        {"q": "x" * 10_000},
        {"requirement": "%%%"},
    ],
)
def test_bad_search_parameters_are_400_json(service_env: ServiceEnv, params: dict[str, str]) -> None:
    body = _json_error(_api(service_env, "/api/v1/search", **params), 400)
    assert body["error"]["code"] in {"BAD_CURSOR", "BAD_REQUEST", "BAD_PARAMETER"}
    assert len(body["error"]["message"]) < 1000  # a 100 KB query is not echoed back


def test_a_100_kb_query_is_a_4xx(service_env: ServiceEnv) -> None:
    """Over 64 KiB no HTTP client sends it: a raw request line; the server refuses, never 5xx."""
    import socket

    host, port = service_env.service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"GET /api/v1/search?q={'x' * 100_000} HTTP/1.1\r\nHost: {host}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert b"Traceback" not in answer


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/search?namespace=a%00b",
        "/api/v1/search?keyword=a%00b",
        "/api/v1/search?license=a%00b",
        "/api/v1/search?requirement=a%00b",
        "/api/v1/bundles/a%00b/c",
        "/api/v1/bundles/ns/na%00me/versions/1%002",
        "/v2/ns/a%00b/referrers/sha256:" + "0" * 64,
    ],
)
def test_a_nul_character_is_a_400_not_a_database_error(service_env: ServiceEnv, path: str) -> None:
    """PostgreSQL text cannot hold NUL: schemathesis found these as 500s on PostgreSQL."""
    body = _json_error(httpx.get(service_env.service.url + path), 400)
    assert "NUL" in body["error"]["message"]


def test_hostile_text_is_just_words(service_env: ServiceEnv) -> None:
    for q in ['"', "NEAR(", "a*", "-", "x OR", "(((", "\\", "💥"]:
        response = _api(service_env, "/api/v1/search", q=q)
        assert response.status_code == 200, (q, response.text)


def test_a_cursor_pages_through_results(service_env: ServiceEnv, pushed: Pushed, tmp_path: Path) -> None:
    _push(service_env, tmp_path, f"seahorse{uuid.uuid4().hex[:6]}")
    first = _api(service_env, "/api/v1/search", limit=1, sort="name").json()
    assert first["next_cursor"]
    second = _api(service_env, "/api/v1/search", limit=1, sort="name", cursor=first["next_cursor"]).json()
    assert second["items"] and second["items"][0] != first["items"][0]
    body = _json_error(
        _api(service_env, "/api/v1/search", limit=1, sort="created", cursor=first["next_cursor"]), 400
    )
    assert body["error"]["code"] == "BAD_CURSOR"


def test_unknown_bundle_and_bad_digest(service_env: ServiceEnv, pushed: Pushed) -> None:
    assert _json_error(_api(service_env, "/api/v1/bundles/nope/nothing"), 404)["error"]["code"] == "NOT_FOUND"
    ns, name = pushed.repository.split("/")
    assert _json_error(_api(service_env, f"/api/v1/bundles/{ns}/{name}/versions/9.9.9"), 404)
    assert (
        _json_error(_api(service_env, f"/api/v1/referrers/{ns}/{name}/sha256:zz"), 400)["error"]["code"]
        == "DIGEST_INVALID"
    )
    oci = _json_error(_api(service_env, f"/v2/{pushed.repository}/referrers/sha256:1234"), 400)
    assert oci["errors"][0]["code"] == "DIGEST_INVALID"
    unknown = _json_error(_api(service_env, "/v2/nope/nothing/referrers/sha256:" + "0" * 64), 404)
    assert unknown["errors"][0]["code"] == "NAME_UNKNOWN"


def test_openapi_documents_every_endpoint(service_env: ServiceEnv) -> None:
    spec = _api(service_env, "/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/api/v1/search",
        "/api/v1/bundles/{namespace}/{name}",
        "/api/v1/bundles/{namespace}/{name}/versions/{version}",
        "/api/v1/bundles/{namespace}/{name}/activity",
        "/api/v1/referrers/{namespace}/{name}/{digest}",
        "/v2/{name}/referrers/{digest}",
    ]:
        responses = paths[path]["get"]["responses"]
        assert {"200", "400"} <= set(responses), path
    assert "404" in paths["/api/v1/bundles/{namespace}/{name}"]["get"]["responses"]


@pytest.fixture(scope="module")
def api_schema(service_env: ServiceEnv) -> Any:
    return schemathesis.openapi.from_url(service_env.service.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_no_5xx_and_json_errors(case: Any, pushed: Pushed) -> None:
    """Generated input to every endpoint (``POST /events`` without the secret: a 401): never a 5xx,
    every error JSON without a traceback."""
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        assert (response.headers.get("content-type") or [""])[0].startswith("application/json"), (
            response.text[:300]
        )
        assert "Traceback" not in response.text
        json.loads(response.text)
