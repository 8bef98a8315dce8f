"""FastAPI dependencies the routers share: a database session, the caller, what it may see.

    >>> from fastapi import Depends                                       # doctest: +SKIP
    >>> def search(session: Session = Depends(get_session),
    ...            visible: Visibility = Depends(get_visibility)): ...     # doctest: +SKIP

What ``create_app`` put on ``app.state`` is read here, so routes never touch ``app.state`` and
tests can override a dependency (``app.dependency_overrides``).

The caller (:func:`get_identity`): ``Authorization: Basic`` (name and password, or name and API
token — what docker, podman and ``ecr-oci login`` store) or ``Bearer <API token>``; none is
anonymous. Credentials that do not check out are a 401, not a silent fall back to anonymous: a
typo must not look like "the bundle does not exist".
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterator

from fastapi import Request
from pydantic import SecretStr
from sqlalchemy.orm import Session

from ecr_oci.server.services.access import ANONYMOUS, Identity
from ecr_oci.server.services.errors import UnauthorizedError
from ecr_oci.server.services.visibility import Visibility
from ecr_oci.server.settings import Settings

__all__ = [
    "basic_credentials",
    "get_identity",
    "get_session",
    "get_settings",
    "get_visibility",
    "require_bearer_secret",
    "sees_who",
]

#: What a caller gets when access control is off: everything (a trusted single-user index).
_TRUSTED = Identity("local", kind="user", is_admin=True)


def get_session(request: Request) -> Iterator[Session]:
    """A read session for one request (closed after the response)."""
    with request.app.state.sessions() as session:
        yield session


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``(name, secret)`` from an ``Authorization: Basic`` value, None when it is not one."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or not name or "\x00" in name or "\x00" in secret:
        return None  # no principal has a NUL in its name, and the database would refuse one
    return name, secret


def require_bearer_secret(request: Request, secret: SecretStr | None, message: str) -> None:
    """Check ``Authorization: Bearer <secret>`` (a shared secret from the settings), compared in
    constant time. Raises :class:`UnauthorizedError` with ``message`` when it is missing or wrong,
    and always when ``secret`` is not configured (``None``)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if (
        secret is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), secret.get_secret_value().encode())
    ):
        raise UnauthorizedError(message)


def get_identity(request: Request) -> Identity:
    """The authenticated caller (cached on the request)."""
    cached = getattr(request.state, "identity", None)
    if isinstance(cached, Identity):
        return cached
    state = request.app.state
    if not state.settings.access_control:
        identity = _TRUSTED
    else:
        header = request.headers.get("authorization", "")
        identity = ANONYMOUS
        if header:
            scheme, _, value = header.partition(" ")
            with state.sessions() as session:
                if scheme.lower() == "bearer":
                    found = state.authenticator.authenticate_bearer(session, value.strip())
                else:
                    pair = basic_credentials(header)
                    found = state.authenticator.authenticate(session, *pair) if pair else None
            if found is None:
                raise UnauthorizedError("wrong credentials: log in again (ecr-oci login)")
            identity = found
    request.state.identity = identity
    return identity


def get_visibility(request: Request) -> Visibility:
    """What the caller may see: exactly the bundles it may pull."""
    identity = get_identity(request)
    if identity.is_admin:
        return Visibility.everything()
    state = request.app.state
    with state.sessions() as session:
        visible: Visibility = state.rules.get(session).visibility(identity)
    return visible


def sees_who(session: Session, request: Request, namespace: str, name: str) -> bool:
    """Whether the caller may see *who* used ``namespace/name`` (actors, addresses, user agents
    in its activity): admins, and principals with ``admin`` on it — not everyone who may pull.
    ``session``: the route's (the rules are read through the shared cache)."""
    identity = get_identity(request)
    if identity.is_admin:
        return True
    rules = request.app.state.rules.get(session)
    return bool(rules.level(identity, f"{namespace}/{name}") == "admin")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
