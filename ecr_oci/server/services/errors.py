"""Errors the service layer raises on purpose; ``routes.errors`` turns them into JSON responses.

    >>> err = InvalidInputError("cursor is not valid base64", code="BAD_CURSOR")
    >>> err.code, str(err)
    ('BAD_CURSOR', 'cursor is not valid base64')

Services hold no HTTP (STYLE.md §9): they name *what* went wrong with a stable ``code``; the
status code is chosen in one place, :mod:`ecr_oci.server.routes.errors`.
"""

from __future__ import annotations

from ecr_oci.errors import Error

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "InvalidInputError",
    "NotFoundError",
    "ServiceError",
    "UnauthorizedError",
]


class ServiceError(Error):
    """Root of the service's own errors; ``code`` is the JSON error code clients match on."""

    default_code = "ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code


class InvalidInputError(ServiceError):
    """The request is malformed (bad cursor, bad digest, malformed notification): a 400."""

    default_code = "BAD_REQUEST"
    exit_code = 2


class NotFoundError(ServiceError):
    """Nothing visible by that name (issue 5: private looks exactly like missing): a 404."""

    default_code = "NOT_FOUND"


class UnauthorizedError(ServiceError):
    """Missing or wrong credentials (the notification secret): a 401."""

    default_code = "UNAUTHORIZED"


class ForbiddenError(ServiceError):
    """Authenticated, but not allowed (an admin action by a non-admin): a 403. Never used for a
    bundle the caller may not see: that is a :class:`NotFoundError`."""

    default_code = "FORBIDDEN"


class ConflictError(ServiceError):
    """The name is taken (a user, team, namespace that exists): a 409."""

    default_code = "CONFLICT"
