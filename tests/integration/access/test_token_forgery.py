"""Forged and misused registry tokens, each refused by the real registry; and what ``/token`` grants.

Every forgery is sent as ``Authorization: Bearer …`` on ``GET /v2/secret/app/manifests/1`` (a
private bundle) and must get 401 — the registry's own token verification (distribution 2.8), not
ours, decides. A control token signed properly for that scope gets 200, so a 401 is the forgery's
doing. Forgeries that need the real key read it from the service's key file (an attacker who has it
has won anyway; this proves the *claims* are checked: expiry, audience, issuer, repository).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.server.services.tokens import new_key_and_certificate
from tests.fixtures.access import AccessEnv, jwt_claims
from tests.fixtures.token_server import b64url, b64url_json

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("access_db_kind", ["sqlite", "postgresql"], indirect=True, scope="module"),
]

REPO = "secret/app"
MANIFEST = f"/v2/{REPO}/manifests/1"


@pytest.fixture(scope="module")
def world(access_env: AccessEnv, skopeo: Any) -> AccessEnv:
    """A private ``secret/app:1`` (a copy of the base image) and a user without access to it."""
    env = access_env
    env.namespace("secret", owner=env.admin.username, visibility="private")
    authfile = env.authfile(env.admin, env.root / "forgery-admin")
    skopeo(
        "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
        "--authfile", str(authfile), f"docker://{env.base}", f"docker://{env.registry.host}/{REPO}:1",
    )  # fmt: skip
    return env


@pytest.fixture(scope="module")
def signing(world: AccessEnv) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The service's real signing key and its ``x5c`` entry."""
    key = serialization.load_pem_private_key(world.service.token_key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(world.service.token_cert_file.read_bytes())
    return key, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _claims(env: AccessEnv, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "ecr-oci",
        "sub": "mallory",
        "aud": env.token_service,
        "exp": now + 300,
        "nbf": now - 5,
        "iat": now,
        "jti": secrets.token_hex(16),
        "access": [{"type": "repository", "name": REPO, "actions": ["pull"]}],
    }
    claims.update(changes)
    return claims


def _sign(key: ec.EllipticCurvePrivateKey, x5c: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key, algorithm="ES256", headers={"x5c": [x5c]})


def _refused(env: AccessEnv, token: str) -> None:
    response = env.registry_get(MANIFEST, token)
    assert response.status_code == 401, (response.status_code, response.text[:300])


def test_control_a_properly_signed_token_is_accepted(world, signing):
    response = world.registry_get(MANIFEST, _sign(*signing, _claims(world)))
    assert response.status_code == 200
    # and the token the service itself issues to the owner
    owner_token = world.token(world.admin, f"repository:{REPO}:pull")
    assert world.registry_get(MANIFEST, owner_token).status_code == 200


def test_no_token_is_refused(world):
    response = world.registry_get(MANIFEST, None)
    assert response.status_code == 401
    assert 'realm="' + world.realm in response.headers["WWW-Authenticate"]


def test_wrong_signing_key(world):
    key, cert = new_key_and_certificate("ecr-oci")  # same subject as ours, another key
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    _refused(world, _sign(key, x5c, _claims(world)))


def test_alg_none(world, signing):
    _, x5c = signing
    header = {"typ": "JWT", "alg": "none", "x5c": [x5c]}
    _refused(world, f"{b64url_json(header)}.{b64url_json(_claims(world))}.")


def test_expired(world, signing):
    now = int(time.time())
    # beyond the registry's 60 s leeway
    _refused(world, _sign(*signing, _claims(world, exp=now - 300, nbf=now - 900, iat=now - 900)))


def test_wrong_audience(world, signing):
    _refused(world, _sign(*signing, _claims(world, aud="another-registry")))


def test_wrong_issuer(world, signing):
    _refused(world, _sign(*signing, _claims(world, iss="someone-else")))


def test_scope_widened_after_signing(world):
    stranger = world.user("forgery-stranger")
    token = world.token(stranger, f"repository:{REPO}:pull")
    assert jwt_claims(token)["access"] == []  # the service granted nothing
    header, _, signature = token.split(".")
    widened = _claims(world, **{k: v for k, v in jwt_claims(token).items() if k != "access"})
    _refused(world, f"{header}.{b64url_json(widened)}.{signature.split('.')[-1]}")


def test_token_for_another_repository(world):
    token = world.token(None, "repository:base/busybox:pull")  # a real token, for the public base
    assert world.registry_get("/v2/base/busybox/manifests/1.36", token).status_code == 200
    _refused(world, token)


def test_hs256_with_the_certificate_as_hmac_secret(world, signing):
    _, x5c = signing
    header = {"typ": "JWT", "alg": "HS256", "x5c": [x5c]}
    signing_input = f"{b64url_json(header)}.{b64url_json(_claims(world))}"
    cert_pem = world.service.token_cert_file.read_bytes()
    public_pem = (
        x509.load_pem_x509_certificate(cert_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for secret in (cert_pem, public_pem, base64.b64decode(x5c)):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        _refused(world, f"{signing_input}.{b64url(mac)}")


# -- what the token endpoint grants ------------------------------------------------------------


def test_scopes_the_principal_lacks_are_absent(world):
    stranger = world.user("scope-stranger")
    assert world.access(stranger, f"repository:{REPO}:pull,push,delete") == []
    reader = world.robot("scope-reader", namespaces=["secret"], grants={REPO: "pull"})
    assert world.access(reader, f"repository:{REPO}:pull,push", "repository:secret/other:push") == [
        {"type": "repository", "name": REPO, "actions": ["pull"]}
    ]
    # anonymous: the public base only, never push
    assert world.access(None, "repository:base/busybox:pull,push", f"repository:{REPO}:pull") == [
        {"type": "repository", "name": "base/busybox", "actions": ["pull"]}
    ]


def test_catalog_scope_only_for_admins(world):
    user = world.user("catalog-user")
    assert world.access(user, "registry:catalog:*") == []
    assert world.access(world.admin, "registry:catalog:*") == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}
    ]
    assert world.registry_get("/v2/_catalog", world.token(user, "registry:catalog:*")).status_code == 401
    listed = world.registry_get("/v2/_catalog", world.token(world.admin, "registry:catalog:*"))
    assert listed.status_code == 200 and REPO in listed.json()["repositories"]


def test_malformed_scope_is_ignored(world):
    response = world.token_response(
        world.admin, "garbage", f"repository:{REPO}", "repository::pull", f"repository:{REPO}:pull"
    )
    assert response.status_code == 200
    assert jwt_claims(response.json()["token"])["access"] == [
        {"type": "repository", "name": REPO, "actions": ["pull"]}
    ]


def test_unknown_service_is_400(world):
    response = world.token_response(world.admin, f"repository:{REPO}:pull", service="another-registry")
    assert response.status_code == 400


def test_wrong_password_is_401(world):
    from ecr_oci.oci.auth import Credentials

    response = world.token_response(Credentials(world.admin.username, "not-the-password"), "")
    assert response.status_code == 401
    assert "token" not in response.json()


@pytest.mark.parametrize("grant_type", ["refresh_token", "client_credentials", ""])
def test_post_form_with_a_non_password_grant_is_400(world, grant_type):
    form = {
        "grant_type": grant_type,
        "client_id": "containerd-client",
        "username": world.admin.username,
        "password": world.admin.password,
        "service": world.token_service,
        "scope": f"repository:{REPO}:pull",
    }
    response = world._http.post(world.realm, data=form)
    assert response.status_code == 400
    assert "token" not in response.json()


def test_post_form_with_the_password_grant_gives_a_token(world):
    form = {
        "grant_type": "password",
        "client_id": "containerd-client",
        "username": world.admin.username,
        "password": world.admin.password,
        "service": world.token_service,
        "scope": f"repository:{REPO}:pull repository:base/busybox:pull",
    }
    response = world._http.post(world.realm, data=form)
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert world.registry_get(MANIFEST, token).status_code == 200
