"""FastAPI dependencies the routers share: a database session, the visibility, the settings.

    >>> from fastapi import Depends                                       # doctest: +SKIP
    >>> def search(session: Session = Depends(get_session),
    ...            visible: Visibility = Depends(get_visibility)): ...     # doctest: +SKIP

What ``create_app`` put on ``app.state`` is read here, so routes never touch ``app.state`` and
tests can override a dependency (``app.dependency_overrides``).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from ecr_oci.server.services.visibility import Visibility
from ecr_oci.server.settings import Settings

__all__ = ["get_session", "get_settings", "get_visibility"]


def get_session(request: Request) -> Iterator[Session]:
    """A read session for one request (closed after the response)."""
    with request.app.state.sessions() as session:
        yield session


def get_visibility(request: Request) -> Visibility:
    """What the caller may see. Issue 5: derived from the authenticated principal."""
    return Visibility.everything()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
