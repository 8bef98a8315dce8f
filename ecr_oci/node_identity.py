"""Key-based node identities: a Waggle node logs in with an assertion signed by its own key.

    >>> from cryptography.hazmat.primitives.asymmetric import ec
    >>> key = ec.generate_private_key(ec.SECP256R1())
    >>> assertion = make_assertion(key, "node-w07b", audience="ecr-registry", ttl=600)
    >>> verify_assertion(public_key_pem(key), assertion, name="node-w07b", audience="ecr-registry")
    >>> assertion.count(".")
    2

Why: provisioning a shared secret (an API token) onto hundreds of nodes means copying secrets
around and rotating them by hand. Instead the node keeps a private key that never leaves it; the
ECR knows only its public key (``ecr-oci admin node create NAME --public-key node.pub``). The
node writes a short-lived assertion — a JWT (ES256 or EdDSA) with ``iss`` = ``sub`` = the node's
name, ``aud`` = the registry's token service, ``iat`` and ``exp`` at most :data:`MAX_TTL_S`
later — into its docker/podman auth file as the password (``ecr-oci node credential``, run from a
timer), and every container runtime sends it as basic auth to the token endpoint, like a password.
This is RFC 7523's JWT client assertion carried in basic auth, because that is what docker, podman
and containerd can send. PyJWT does the signing and checking.
"""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

__all__ = [
    "MAX_TTL_S",
    "NodeKey",
    "check_public_key",
    "looks_like_assertion",
    "make_assertion",
    "public_key_pem",
    "verify_assertion",
]

#: The longest an assertion may live (seconds): a stolen one is worth at most this long.
MAX_TTL_S = 24 * 3600

NodeKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def public_key_pem(key: NodeKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def check_public_key(pem: str) -> None:
    """Raise ValueError unless ``pem`` is an EC P-256 or Ed25519 public key."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ValueError("the public key is not a PEM public key") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    raise ValueError("the public key must be EC P-256 or Ed25519")


def looks_like_assertion(secret: str) -> bool:
    return secret.startswith("eyJ") and secret.count(".") == 2 and len(secret) < 4096


def make_assertion(key: NodeKey, name: str, *, audience: str, ttl: int = 3600) -> str:
    """A login assertion for node ``name``, valid ``ttl`` seconds (at most :data:`MAX_TTL_S`)."""
    if not 0 < ttl <= MAX_TTL_S:
        raise ValueError(f"ttl must be between 1 and {MAX_TTL_S} seconds")
    now = int(time.time())
    algorithm = "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey) else "ES256"
    claims = {"iss": name, "sub": name, "aud": audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, key, algorithm=algorithm)


def verify_assertion(pem: str, assertion: str, *, name: str, audience: str) -> None:
    """Raise ``jwt.InvalidTokenError`` unless ``assertion`` is a current one of node ``name``."""
    public_key = serialization.load_pem_public_key(pem.encode())
    # the key decides the algorithm: never let the assertion's header choose it
    algorithm = "EdDSA" if isinstance(public_key, ed25519.Ed25519PublicKey) else "ES256"
    claims = jwt.decode(
        assertion,
        public_key,  # type: ignore[arg-type]  # checked by check_public_key when stored
        algorithms=[algorithm],
        audience=audience,
        issuer=name,
        options={"require": ["iss", "sub", "aud", "iat", "exp"]},
        leeway=30,
    )
    if claims["sub"] != name:
        raise jwt.InvalidTokenError("the assertion is not about this node")
    if int(claims["exp"]) - int(claims["iat"]) > MAX_TTL_S:
        raise jwt.InvalidTokenError("the assertion lives too long")
