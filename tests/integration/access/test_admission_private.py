"""The admission webhook reads a token-auth registry with the service's own access (issue 5): a
private bundle, signed and approved, is admitted; the same bundle unsigned is not. No credentials
are configured for the webhook: the service mints its own pull tokens with its token key
(``services.tokens.ServiceRegistryAuth``), which the registry verifies like any other.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.access import AccessEnv
from tests.fixtures.cosign import PASSWORD, KeyFiles
from tests.integration.conftest import make_runner, write_bundle
from tests.integration.service.test_admission import (
    PROD,
    PROD_NS,
    WEBHOOK_TOKEN,
    AdmissionService,
    pod_review,
)

pytestmark = pytest.mark.integration


def _push_private(env: AccessEnv, root: Path, namespace: str, name: str, authfile: Path) -> str:
    directory = write_bundle(root / name, base=env.base, name=name)
    spec = directory / "ecr.yaml"
    spec.write_text(re.sub(r"(?m)^  namespace: .*$", f"  namespace: {namespace}", spec.read_text()))
    ecr = make_runner(root / "home", env={"COSIGN_PASSWORD": PASSWORD})
    done = ecr("push", str(directory), "--registry", env.registry.host, "--insecure", "--json",
               "--authfile", str(authfile))  # fmt: skip
    image: str = json.loads(done.stdout)["image"]
    return image


def test_webhook_reads_private_bundles_with_its_own_access(
    access_env: AccessEnv, cosign_keys: KeyFiles, tmp_path: Path
) -> None:
    env = access_env
    namespace = f"vault{uuid.uuid4().hex[:6]}"
    env.namespace(namespace, owner=env.admin.username, visibility="private")
    authfile = env.authfile(env.admin, tmp_path / "admin-auth")
    signed = _push_private(env, tmp_path, namespace, "signed", authfile)
    unsigned = _push_private(env, tmp_path, namespace, "unsigned", authfile)
    ecr = make_runner(tmp_path / "home", env={"COSIGN_PASSWORD": PASSWORD})
    key = str(cosign_keys.private)
    ecr("sign", signed, "--key", key, "--insecure", "--authfile", str(authfile))
    ecr("approve", signed, "--key", key, "--deployment", PROD, "--insecure", "--authfile", str(authfile))
    anonymous = httpx.get(f"{env.registry.url}/v2/{namespace}/signed/tags/list", timeout=10)
    assert anonymous.status_code == 401  # private: nobody without a grant can read it

    token_dir = env.service.root / "token"
    toml = (
        f"admission_trusted_keys = [{json.dumps(str(cosign_keys.public))}]\n"
        f'admission_deployments = {{ "{PROD_NS}" = "{PROD}" }}\n'
        f'admission_token = "{WEBHOOK_TOKEN}"\n'
    )
    webhook = AdmissionService(tmp_path / "webhook", registry=env.registry.host, admission_toml=toml)
    # the same token key as the registry's token server: another replica of the service
    webhook.settings.update(
        token_key_file=str(token_dir / "key.pem"),
        token_cert_file=str(token_dir / "cert.pem"),
        token_service=env.token_service,
    )
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    with webhook, httpx.Client(base_url=webhook.url, timeout=30, headers=headers) as http:
        anyone = httpx.post(f"{webhook.url}/admission/validate", json=pod_review(signed), timeout=10)
        assert anyone.status_code == 401  # only the API server (its token) gets answers
        for image, allowed in ((signed, True), (unsigned, False)):
            tag = image.split("@", 1)[0]
            answer = http.post("/admission/validate", json=pod_review(tag, namespace=PROD_NS))
            assert answer.status_code == 200, answer.text
            response = answer.json()["response"]
            assert response["allowed"] is allowed, response
            if not allowed:
                message = response["status"]["message"]
                assert "not signed by a trusted key" in message
                assert "sha256:" not in message  # no digest of a private bundle in a denial
