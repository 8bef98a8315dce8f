"""The admission webhook end to end (issue 5): a real ``ecr-oci serve`` process with admission
settings, a real registry, images pushed, signed and approved with ``ecr-oci push``/``sign``/
``approve`` (the cosign-made key is the trusted one; the ecr-oci-made key is "another key"), and
AdmissionReviews POSTed over HTTP as the Kubernetes API server sends them.

The cache is watched through the registry's own log: a second review of a digest costs no registry
request, a second review of a tag exactly one (``HEAD`` of the tag; tags are resolved on every
review, so a moved tag is caught at once).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ecr_oci.devenv import LocalRegistry
from ecr_oci.devenv.registry import LoggedResponse
from ecr_oci.devenv.service import LocalService
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.reference import Reference
from ecr_oci.signing.approval import approve_image
from tests.fixtures.cosign import PASSWORD, KeyFiles
from tests.integration.conftest import Runner, make_runner, push_json, write_bundle

pytestmark = pytest.mark.integration

PROD_NS, PROD = "prod-ns", "waggle-prod"
EXEMPT = "docker.io/library/busybox"
#: What the API server sends (its admission kubeconfig's token).
WEBHOOK_TOKEN = "apiserver-" + uuid.uuid4().hex


class AdmissionService(LocalService):
    """``ecr-oci serve`` whose ecr.toml also holds the admission settings (lists and a table, which
    :class:`LocalService`'s scalar ``settings`` cannot write)."""

    def __init__(self, root: Path, *, registry: str, admission_toml: str) -> None:
        super().__init__(
            root, registry=registry, settings={"reconcile_interval": 0, "reconcile_on_start": False}
        )
        self.admission_toml = admission_toml

    def write_config(self) -> Path:
        path = super().write_config()
        path.write_text(path.read_text() + self.admission_toml)
        return path


@dataclass
class Env:
    registry: LocalRegistry
    service: AdmissionService
    http: httpx.Client
    ecr: Runner
    trusted: KeyFiles
    other: KeyFiles
    push: Callable[..., Reference]

    def review(self, *images: str | None, namespace: str = PROD_NS, **request: Any) -> dict[str, Any]:
        """POST a Pod review with these container images; the ``response`` (uid checked)."""
        body = pod_review(*images, namespace=namespace, **request)
        response = self.post(json.dumps(body).encode())
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == body["request"]["uid"]
        if not answer["response"]["allowed"]:
            assert answer["response"]["status"]["code"] == 403
        result: dict[str, Any] = answer["response"]
        return result

    def post(self, body: bytes) -> httpx.Response:
        return self.http.post(
            "/admission/validate",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        )

    def sign(self, ref: Reference, key: KeyFiles) -> None:
        self.ecr("sign", str(ref), "--key", str(key.private), "--insecure")

    def approve(self, ref: Reference, key: KeyFiles, deployment: str = PROD) -> None:
        self.ecr("approve", str(ref), "--key", str(key.private), "--deployment", deployment, "--insecure")


def pod_review(*images: str | None, namespace: str = PROD_NS, **request: Any) -> dict[str, Any]:
    containers = [
        {"name": f"c{i}", **({"image": image} if image is not None else {})} for i, image in enumerate(images)
    ]
    body: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "plugin-", "namespace": namespace},
            "spec": {"containers": containers, "restartPolicy": "Always"},
        },
        "dryRun": False,
    }
    body.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}


@pytest.fixture(scope="module")
def env(
    registry: LocalRegistry,
    base_image: str,
    cosign_keys: KeyFiles,
    ecr_keys: KeyFiles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("admission")
    toml = (
        f"admission_trusted_keys = [{json.dumps(str(cosign_keys.public))}]\n"
        f'admission_deployments = {{ "{PROD_NS}" = "{PROD}" }}\n'
        f'admission_exempt_images = ["{EXEMPT}"]\n'
        "admission_cache_ttl = 60\n"
        f'admission_token = "{WEBHOOK_TOKEN}"\n'
    )
    service = AdmissionService(root / "service", registry=registry.host, admission_toml=toml)
    ecr = make_runner(root / "home", env={"COSIGN_PASSWORD": PASSWORD})

    def push(
        name: str, *, version: str = "0.1.0", model: bytes | None = None, force: bool = False
    ) -> Reference:
        directory = write_bundle(
            root / f"{name}-{uuid.uuid4().hex[:6]}", base=base_image, name=name, version=version, model=model
        )
        result = push_json(ecr, directory, registry.host, *(["--force"] if force else []))
        return Reference.parse(result["image"])

    service.start()
    try:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            yield Env(registry, service, http, ecr, cosign_keys, ecr_keys, push)
    finally:
        service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def by_digest(ref: Reference) -> str:
    assert ref.digest is not None
    return f"{ref.repository_url_part}@{ref.digest}"


def by_tag(ref: Reference) -> str:
    return f"{ref.repository_url_part}:{ref.tag}"


def settled_responses(registry: LocalRegistry, offset: int) -> list[LoggedResponse]:
    """The registry's logged responses since ``offset``, once its log has stopped growing."""
    size = registry.log_offset()
    for _ in range(20):
        time.sleep(0.15)
        if registry.log_offset() == size:
            break
        size = registry.log_offset()
    return registry.responses(offset)


# --- allow and deny --------------------------------------------------------------------------------


def test_signed_and_approved_is_allowed(env: Env) -> None:
    ref = env.push(unique("adm-ok"))
    env.sign(ref, env.trusted)
    env.approve(ref, env.trusted)
    for image in (by_tag(ref), by_digest(ref), str(ref)):
        response = env.review(image)
        assert response["allowed"] is True, response
        assert "status" not in response
    # a namespace without a deployment needs the signature only
    assert env.review(by_tag(ref), namespace="default")["allowed"] is True


def test_unsigned_is_denied(env: Env) -> None:
    ref = env.push(unique("adm-unsigned"))
    env.approve(ref, env.trusted)  # an approval alone is not enough
    response = env.review(by_tag(ref))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "container 'c0'" in message and "not signed by a trusted key (no-signature)" in message
    assert str(ref.digest) not in message  # denials carry no digests (the service log has them)
    # outside the approval namespaces too
    assert env.review(by_tag(ref), namespace="default")["allowed"] is False


def test_signed_with_another_key_is_denied(env: Env) -> None:
    ref = env.push(unique("adm-wrongkey"))
    env.sign(ref, env.other)
    env.approve(ref, env.trusted)
    response = env.review(by_tag(ref), namespace="default")
    assert response["allowed"] is False
    assert "not signed by a trusted key (wrong-key)" in response["status"]["message"]


def test_approval_by_another_key_is_denied(env: Env) -> None:
    ref = env.push(unique("adm-otherapprover"))
    env.sign(ref, env.trusted)
    env.approve(ref, env.other)
    message = env.review(by_tag(ref))["status"]["message"]
    assert f"no valid approval for deployment '{PROD}' (wrong-key)" in message


def test_approval_for_another_deployment_is_denied(env: Env) -> None:
    ref = env.push(unique("adm-otherdeploy"))
    env.sign(ref, env.trusted)
    env.approve(ref, env.trusted, deployment="waggle-dev")
    response = env.review(by_tag(ref))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert f"no valid approval for deployment '{PROD}' (wrong-deployment)" in message
    assert "waggle-dev" not in message  # which deployments approved it is for the service log
    # where no approval is needed it runs
    assert env.review(by_tag(ref), namespace="default")["allowed"] is True


def test_expired_approval_is_denied(env: Env) -> None:
    ref = env.push(unique("adm-expired"))
    env.sign(ref, env.trusted)
    then = datetime(2024, 1, 1, tzinfo=UTC)
    with RegistryClient(env.registry.host, insecure=True) as client:
        approve_image(
            client,
            ref,
            env.trusted.private_key(),
            deployment=PROD,
            now=then,
            expires=then + timedelta(days=30),
        )
    response = env.review(by_digest(ref))
    assert response["allowed"] is False
    assert "(expired)" in response["status"]["message"]


def test_a_cached_approval_is_not_used_past_its_expiry(env: Env) -> None:
    """The cache TTL is 60 s, the approval lasts 3 s: the verdict must not outlive the approval."""
    ref = env.push(unique("adm-expiring"))
    env.sign(ref, env.trusted)
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(seconds=3)
    with RegistryClient(env.registry.host, insecure=True) as client:
        approve_image(client, ref, env.trusted.private_key(), deployment=PROD, now=now, expires=expires)
    assert env.review(by_digest(ref))["allowed"] is True
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    response = env.review(by_digest(ref))
    assert response["allowed"] is False and "(expired)" in response["status"]["message"]


def test_tag_moved_after_approval_is_denied_for_the_new_digest(env: Env) -> None:
    name = unique("adm-moved")
    approved = env.push(name, model=b"approved model")
    env.sign(approved, env.trusted)
    env.approve(approved, env.trusted)
    assert env.review(by_tag(approved))["allowed"] is True  # now cached for the approved digest

    moved = env.push(name, model=b"another model, never approved", force=True)
    assert moved.tag == approved.tag and moved.digest != approved.digest
    env.sign(moved, env.trusted)  # signed by CI, but nobody approved it
    response = env.review(by_tag(approved))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "(no-attestation)" in message and "sha256:" not in message
    # the approved digest itself still runs
    assert env.review(by_digest(approved))["allowed"] is True


def test_one_bad_container_denies_the_pod_and_is_named(env: Env) -> None:
    good = env.push(unique("adm-good"))
    env.sign(good, env.trusted)
    env.approve(good, env.trusted)
    bad = env.push(unique("adm-bad"))
    body = pod_review(by_tag(good), by_tag(bad))
    body["request"]["object"]["spec"]["containers"][0]["name"] = "app"
    body["request"]["object"]["spec"]["containers"][1]["name"] = "sidecar"
    body["request"]["object"]["spec"]["initContainers"] = [{"name": "init", "image": by_digest(good)}]
    answer = env.post(json.dumps(body).encode()).json()["response"]
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert message.startswith(f"container 'sidecar' ({by_tag(bad)}): not signed by a trusted key")
    assert "'app'" not in message and "'init'" not in message and message.count("ontainer '") == 1


def test_images_of_other_registries_and_exemptions(env: Env) -> None:
    response = env.review("quay.io/someone/miner:latest", "nginx")
    message = response["status"]["message"]
    assert f"not in the ECR registry {env.registry.host}" in message
    assert "container 'c0'" in message and "container 'c1'" in message
    exempt = env.review("busybox:1.36", namespace="default")
    assert exempt["allowed"] is True
    assert exempt["warnings"] == [f"{EXEMPT}:1.36 admitted unverified (admission_exempt_images)"]


def test_a_missing_image_is_denied_like_an_unsigned_one(env: Env) -> None:
    """A cluster user must not learn from a denial whether a (private) image exists."""
    host = env.registry.host
    unsigned = env.push(unique("adm-exists"))
    expected = "not signed by a trusted key (no-signature), or no such image"
    for image in (f"{host}/nobody/nothing:1.0", f"{host}/nobody/nothing@sha256:{'0' * 64}", by_tag(unsigned)):
        message = env.review(image)["status"]["message"]
        assert message.endswith(f"): {expected}"), message


def test_only_the_api_server_gets_answers(env: Env) -> None:
    body = json.dumps(pod_review(f"{env.registry.host}/nobody/nothing:1.0")).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {WEBHOOK_TOKEN}"}):
        answer = env.http.post("/admission/validate", content=body, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "UNAUTHORIZED"


# --- malformed reviews ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}, "only Pods are checked"),
        ({"object": {"spec": {"containers": []}}}, "no containers"),
        ({"object": None}, "no containers"),
        ({"object": {"spec": {"containers": {"name": "x"}}}}, "malformed AdmissionReview"),
        ({"object": {"spec": {"containers": [{"name": "x"}]}}}, "container 'x': no image"),
        (
            {"object": {"spec": {"containers": [{"name": "x", "image": "::garbage::"}]}}},
            "invalid image reference",
        ),
        (
            {"object": {"spec": {"containers": [{"name": "x", "image": "ab" * 2000}]}}},
            "invalid image reference",
        ),
        ({"kind": "Pod"}, "malformed AdmissionReview: request.kind"),
    ],
)
def test_malformed_reviews_get_a_well_formed_denial(env: Env, change: dict[str, Any], says: str) -> None:
    body = pod_review("placeholder")
    body["request"].update(change)
    response = env.post(json.dumps(body).encode())
    assert response.status_code == 200 and "Traceback" not in response.text
    answer = response.json()["response"]
    assert answer["uid"] == body["request"]["uid"] and answer["allowed"] is False
    assert answer["status"]["code"] == 403 and says in answer["status"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"request": {"kind": {"kind": "Pod"}}}',
        b'{"request": {"uid": 1}}',
    ],
)
def test_reviews_without_a_uid_are_a_400_json_error(env: Env, body: bytes) -> None:
    response = env.post(body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "BAD_REQUEST" and "Traceback" not in response.text


def test_the_route_is_in_the_openapi(env: Env) -> None:
    spec = env.http.get("/openapi.json").json()["paths"]["/admission/validate"]["post"]
    assert {"200", "400"} <= set(spec["responses"])
    assert "AdmissionReview" in json.dumps(spec["requestBody"])


# --- the cache ------------------------------------------------------------------------------------


def test_second_review_of_a_digest_does_not_touch_the_registry(env: Env) -> None:
    ref = env.push(unique("adm-cache"))
    env.sign(ref, env.trusted)
    env.approve(ref, env.trusted)

    offset = env.registry.log_offset()
    assert env.review(by_digest(ref))["allowed"] is True
    first = settled_responses(env.registry, offset)
    assert len(first) >= 4  # the image, its .sig manifest and payload, its .att manifest and envelope

    offset = env.registry.log_offset()
    assert env.review(by_digest(ref))["allowed"] is True
    assert settled_responses(env.registry, offset) == []

    # by tag: one HEAD of the tag per review (tags are never cached), nothing else
    offset = env.registry.log_offset()
    assert env.review(by_tag(ref))["allowed"] is True
    (only,) = settled_responses(env.registry, offset)
    assert (only.method, only.path) == ("HEAD", f"/v2/{ref.repository}/manifests/{ref.tag}")

    # the cache is per deployment: the same digest in a namespace without one is checked afresh
    offset = env.registry.log_offset()
    assert env.review(by_digest(ref), namespace="default")["allowed"] is True
    assert settled_responses(env.registry, offset) != []


def test_denials_are_cached_too_and_two_containers_of_one_image_are_checked_once(env: Env) -> None:
    ref = env.push(unique("adm-cache-deny"))
    offset = env.registry.log_offset()
    assert env.review(by_digest(ref), by_digest(ref))["allowed"] is False
    first = settled_responses(env.registry, offset)
    heads = [r for r in first if r.method == "HEAD" and r.path.endswith(f"/manifests/{ref.digest}")]
    assert len(heads) == 1  # one verification for both containers
    offset = env.registry.log_offset()
    assert env.review(by_digest(ref))["allowed"] is False
    assert settled_responses(env.registry, offset) == []
