"""Registry tokens: the signing key, scopes, and the JWTs distribution 2.8 accepts (REFERENCE.md,
"Token auth").

    >>> parse_scope("repository:waggle/hello:pull,push")
    Scope(type='repository', name='waggle/hello', actions=('pull', 'push'))
    >>> parse_scope("registry:catalog:*")
    Scope(type='registry', name='catalog', actions=('*',))

The key is an EC P-256 key with a self-signed certificate, made on first start and kept in
``token_key_file`` / ``token_cert_file``; the registry's ``auth.token.rootcertbundle`` is that
certificate. Each JWT is ES256 with the certificate in ``x5c`` (the registry checks the chain
against its bundle; 2.8 also takes a libtrust ``kid``, but x5c needs no fingerprint code of ours).
Claims: ``iss``, ``sub``, ``aud`` (a string: 2.8 rejects a list), ``exp``, ``nbf``, ``iat``,
``jti``, ``access``. PyJWT signs (``cryptography`` underneath).

:class:`ServiceRegistryAuth` is how the service itself reads the registry when it is configured
for tokens: it mints its own pull tokens in process (no HTTP round trip to itself, so it also works
before the service is listening, e.g. for the reconcile at start).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import secrets
import threading
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ecr_oci.oci.auth import repository_of

__all__ = [
    "SERVICE_PRINCIPAL",
    "Scope",
    "ServiceRegistryAuth",
    "TokenIssuer",
    "new_key_and_certificate",
    "parse_scope",
    "parse_scopes",
]

#: The ``sub`` of the tokens the service mints for itself.
SERVICE_PRINCIPAL = "ecr-service"
#: ``type[(class)]:name:actions``; the name has no ``:`` and no control character (a NUL would
#: reach the audit log, which PostgreSQL's JSONB refuses).
_SCOPE = re.compile(
    r"^(?P<type>[a-z]+)(?:\([a-z0-9]+\))?:(?P<name>[^:\x00-\x1f\x7f]+):(?P<actions>[a-z*,]*)$"
)


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]


def parse_scope(text: str) -> Scope | None:
    """A scope string ``type[(class)]:name:actions``, or None when malformed (ignored, as
    distribution's own token servers do)."""
    match = _SCOPE.match(text.strip())
    if match is None or len(text) > 512:
        return None
    actions = tuple(a for a in match["actions"].split(",") if a)
    return Scope(match["type"], match["name"], actions)


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from query/form values, each of which may hold several separated by spaces."""
    found: list[Scope] = []
    for value in values:
        for part in value.split():
            scope = parse_scope(part)
            if scope is not None:
                found.append(scope)
    return found


def new_key_and_certificate(issuer: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """An EC P-256 key and its self-signed CA certificate (CN ``issuer``, ten years): what a
    registry's ``rootcertbundle`` holds and a token's ``x5c`` carries."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


class TokenIssuer:
    """Signs registry tokens for ``service`` as ``issuer`` with the key in ``key_file``."""

    def __init__(self, key_file: Path, cert_file: Path, *, issuer: str, service: str, ttl: int = 300) -> None:
        self.issuer = issuer
        self.service = service
        self.ttl = ttl
        self.cert_file = cert_file
        self._key, certificate = self._load_or_create(key_file, cert_file, issuer)
        self._x5c = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]

    @staticmethod
    def _load_or_create(
        key_file: Path, cert_file: Path, issuer: str
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if key_file.exists() and cert_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_file}: the token key must be an EC P-256 key")
            return key, x509.load_pem_x509_certificate(cert_file.read_bytes())
        key, certificate = new_key_and_certificate(issuer)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        cert_file.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return key, certificate

    def issue(self, subject: str, access: list[dict[str, Any]]) -> dict[str, Any]:
        """The token endpoint's answer: ``token``, ``access_token``, ``expires_in``, ``issued_at``."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})
        issued = dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")
        return {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}

    def registry_auth_config(self, realm: str) -> dict[str, str]:
        """The registry's ``auth.token`` block for this issuer."""
        return {
            "realm": realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.cert_file.absolute()),
        }


class ServiceRegistryAuth(httpx.Auth):
    """The service's own registry access: a pull token per repository for reads (the catalog for
    ``/v2/_catalog``), pull and push for writes (reconcile mends referrer fallback indexes), minted
    in process and reused until shortly before it expires."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self._issuer = issuer
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        write = request.method in ("PUT", "POST", "PATCH")
        request.headers["Authorization"] = self.authorization(request.url.path, write=write)
        yield request

    def authorization(self, path: str, *, write: bool = False) -> str:
        """The ``Authorization`` header for a request to ``path`` (also for clients other than
        httpx: the indexer's :class:`~ecr_oci.oci.reads.MetadataReader`)."""
        return f"Bearer {self._token_for(path, write)}"

    def _token_for(self, path: str, write: bool) -> str:
        repository = repository_of(path)
        key = repository or ("catalog" if path.startswith("/v2/_catalog") else "")
        if repository and write:
            key += " push"
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        if repository:
            actions = ["pull", "push"] if write else ["pull"]
            access = [{"type": "repository", "name": repository, "actions": actions}]
        elif key == "catalog":
            access = [{"type": "registry", "name": "catalog", "actions": ["*"]}]
        else:
            access = []
        token = str(self._issuer.issue(SERVICE_PRINCIPAL, access)["token"])
        with self._lock:
            self._tokens[key] = (token, now + max(self._issuer.ttl - 30, 5))
        return token
