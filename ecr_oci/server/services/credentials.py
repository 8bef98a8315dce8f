"""Passwords, API tokens, and turning a username + secret into an :class:`Identity`.

    >>> hashed = hash_password("s3cret-pass")
    >>> hashed.startswith("$argon2id$")
    True
    >>> token = format_token(7, "abc")
    >>> token, parse_token(token)
    ('ecr_7_abc', (7, 'abc'))

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommendation); an
argon2 check costs tens of milliseconds on purpose. Clients send the password with every token
request (docker, podman and containerd ask the realm for each repository and scope), so
:class:`Authenticator` remembers a *successful* check for :data:`VERIFIED_TTL_S` seconds, keyed by a
keyed hash (HMAC with a per-process random key) of the name, the password and the stored hash —
the password itself is never kept, a changed password or hash misses the cache, and a failed check
is never cached.

Nodes with a registered public key may also log in with an assertion signed by their key instead
of a token (``ecr_oci.node_identity``).

API tokens are ``ecr_<id>_<secret>`` with a 256-bit random secret; only its SHA-256 is stored
(a secret that long needs no slow hash). Robots and nodes have tokens only. The username sent with
a token must be its principal's name, so a leaked token does not also reveal whose it is.

Clients ask for a token per repository and action, so the same credentials come many times a
second: a *successful* authentication's :class:`Identity` (teams, robot scope, admin flag) is also
remembered for :data:`IDENTITY_TTL_S` seconds under the same kind of keyed hash of the name and the
secret, which saves the principal, token, team and scope queries. The price: disabling a
principal, revoking a token, changing a password or team membership reaches the token endpoint
within those few seconds (the rules themselves — grants, visibility — apply at once: they are
checked per request against ``RuleCache``).

Unknown users still cost one argon2 check (against a fixed dummy hash), so the answer time does not
tell which names exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from datetime import UTC, datetime

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ecr_oci.node_identity import looks_like_assertion, verify_assertion
from ecr_oci.server.db.accounts import ApiToken, Principal
from ecr_oci.server.db.models import aware
from ecr_oci.server.services.access import Identity, identity_of

__all__ = [
    "IDENTITY_TTL_S",
    "TOKEN_PREFIX",
    "VERIFIED_TTL_S",
    "Authenticator",
    "format_token",
    "hash_password",
    "new_api_token",
    "parse_token",
]

TOKEN_PREFIX = "ecr_"  # noqa: S105 - the prefix of API tokens, not a secret
#: How long a successful password check is remembered (seconds).
VERIFIED_TTL_S = 300.0
#: How long an authenticated identity is reused for the same name and secret (seconds).
IDENTITY_TTL_S = 5.0
#: Most remembered checks (oldest dropped first).
_VERIFIED_MAX = 10_000

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def format_token(token_id: int, secret: str) -> str:
    return f"{TOKEN_PREFIX}{token_id}_{secret}"


def parse_token(value: str) -> tuple[int, str] | None:
    """``(id, secret)`` of an API token, or None when ``value`` is not shaped like one."""
    if not value.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = value[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not token_id.isdigit() or not secret or len(token_id) > 18:
        return None
    return int(token_id), secret


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_token(
    session: Session, principal: Principal, *, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token row for ``principal`` and the token's only plaintext (shown once)."""
    secret = secrets.token_urlsafe(32)
    row = ApiToken(principal_id=principal.id, name=name, secret_sha256=_sha256(secret), expires_at=expires_at)
    session.add(row)
    session.flush()
    return row, format_token(row.id, secret)


def _expired(when: datetime | None, now: datetime) -> bool:
    stored = aware(when)
    return stored is not None and stored <= now


class Authenticator:
    """``authenticate(session, username, secret)`` → :class:`Identity` or None (thread-safe)."""

    def __init__(
        self,
        ttl: float = VERIFIED_TTL_S,
        identity_ttl: float = IDENTITY_TTL_S,
        *,
        audience: str | None = None,
    ) -> None:
        #: The token service node assertions must name (``aud``); None: no key-based logins.
        self.audience = audience
        self.ttl = ttl
        self.identity_ttl = identity_ttl
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}
        self._identities: dict[bytes, tuple[Identity, float]] = {}
        self._lock = threading.Lock()

    def _identity_key(self, username: str, secret: str) -> bytes:
        return hmac.new(self._key, f"identity\0{username}\0{secret}".encode(), "sha256").digest()

    def cached(self, username: str, secret: str) -> Identity | None:
        """The identity of a login that succeeded within ``identity_ttl`` seconds, else None (no
        database, no hashing: the token endpoint answers these without leaving the event loop)."""
        with self._lock:
            found = self._identities.get(self._identity_key(username, secret))
        return found[0] if found is not None and found[1] > time.monotonic() else None

    def authenticate(self, session: Session, username: str, secret: str) -> Identity | None:
        found = self.cached(username, secret)
        if found is None:
            found = self._authenticate(session, username, secret)
            self._remember(username, secret, found)
        return found

    def _remember(self, username: str, secret: str, found: Identity | None) -> None:
        """Keep a successful login for ``identity_ttl`` seconds (failures are never kept)."""
        if found is None or self.identity_ttl <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._identities) >= _VERIFIED_MAX:
                self._identities = {k: v for k, v in self._identities.items() if v[1] > now}
                if len(self._identities) >= _VERIFIED_MAX:
                    self._identities.clear()
            self._identities[self._identity_key(username, secret)] = (found, now + self.identity_ttl)

    def _authenticate(self, session: Session, username: str, secret: str) -> Identity | None:
        now = datetime.now(UTC)
        parsed = parse_token(secret)
        if parsed is not None:
            return self._by_token(session, username, parsed, now)
        principal = session.scalar(select(Principal).where(Principal.name == username))
        if principal is not None and principal.public_key and looks_like_assertion(secret):
            return self._by_assertion(session, principal, secret, now)
        if principal is None or principal.password_hash is None:
            self._check(_DUMMY_HASH, username, secret)  # same cost as a real check
            return None
        if principal.disabled or _expired(principal.expires_at, now):
            self._check(_DUMMY_HASH, username, secret)  # a disabled name answers as slowly as any
            return None
        if not self._check(principal.password_hash, username, secret):
            return None
        return identity_of(session, principal)

    def _by_assertion(
        self, session: Session, principal: Principal, assertion: str, now: datetime
    ) -> Identity | None:
        """A node's login with an assertion signed by its key (``ecr_oci.node_identity``)."""
        if self.audience is None or principal.disabled or _expired(principal.expires_at, now):
            return None
        assert principal.public_key is not None
        try:
            verify_assertion(principal.public_key, assertion, name=principal.name, audience=self.audience)
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        return dataclasses.replace(identity_of(session, principal), method="assertion")

    def authenticate_bearer(self, session: Session, token: str) -> Identity | None:
        """An API token sent as ``Authorization: Bearer <token>`` (the service API); remembered
        like a basic login (under no name: the token alone identifies its principal)."""
        found = self.cached("", token)
        if found is None:
            parsed = parse_token(token)
            found = None if parsed is None else self._by_token(session, None, parsed, datetime.now(UTC))
            self._remember("", token, found)
        return found

    def _by_token(
        self, session: Session, username: str | None, parsed: tuple[int, str], now: datetime
    ) -> Identity | None:
        token_id, secret = parsed
        found = session.execute(
            select(ApiToken, Principal)
            .join(Principal, Principal.id == ApiToken.principal_id)
            .where(ApiToken.id == token_id)
        ).first()
        if found is None:
            return None
        token, principal = found
        if not hmac.compare_digest(token.secret_sha256, _sha256(secret)):
            return None
        if (username is not None and principal.name != username) or principal.disabled:
            return None
        if _expired(token.expires_at, now) or _expired(principal.expires_at, now):
            return None
        return dataclasses.replace(
            identity_of(session, principal), method="token", token_expires=aware(token.expires_at)
        )

    def _check(self, stored_hash: str, username: str, password: str) -> bool:
        key = hmac.new(self._key, f"{username}\0{password}\0{stored_hash}".encode(), "sha256").digest()
        now = time.monotonic()
        with self._lock:
            expires = self._verified.get(key)
            if expires is not None and expires > now:
                return True
        try:
            _hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        with self._lock:
            if len(self._verified) >= _VERIFIED_MAX:
                for old in sorted(self._verified, key=self._verified.__getitem__)[: _VERIFIED_MAX // 10]:
                    del self._verified[old]
            self._verified[key] = now + self.ttl
        return True
