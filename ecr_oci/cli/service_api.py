"""The CLI's one client of the ECR service's HTTP API (``search``, ``show``, ``admin``).

    >>> api = ServiceApi("http://127.0.0.1:8000", auth=None)
    >>> api.host
    '127.0.0.1:8000'

The caller's credentials are the entry for the service's ``host:port`` in the docker auth files
(``--authfile``, else podman's and docker's, as ``ecr-oci login`` writes them), or none: then the
service answers as it answers anyone (public bundles only). Every failure is one
:class:`ServiceApiError` line: cannot reach it, 401 (log in), 403 (not allowed), or the service's
own ``{"error": {"code", "message"}}``; exit code 2 for a 400 (bad input), 3 for a 409 (taken).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
import httpx
from pydantic import BaseModel, ValidationError

from ecr_oci.cli.options import RegistryOptions
from ecr_oci.errors import Error
from ecr_oci.oci.redact import redact_url

__all__ = ["DEFAULT_SERVICE_URL", "ServiceApi", "ServiceApiError", "service_credentials", "service_option"]

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
_TIMEOUT = 30.0
_M = TypeVar("_M", bound=BaseModel)


class ServiceApiError(Error):
    """The ECR service could not be reached or refused the request (its error code in ``code``)."""

    def __init__(self, message: str, *, code: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code


def service_option(f: Any) -> Any:
    """``--service URL`` (or ``$ECR_SERVICE_URL``, read here at the CLI's edge, STYLE.md §8)."""
    return click.option(
        "--service",
        "service_url",
        envvar="ECR_SERVICE_URL",
        default=DEFAULT_SERVICE_URL,
        show_default=True,
        help="The ECR service's base URL (or $ECR_SERVICE_URL).",
    )(f)


def service_credentials(service_url: str, authfile: Path | None = None) -> tuple[str, str] | None:
    """The stored credentials for the service's ``host:port``, if any."""
    host = urlsplit(service_url).netloc
    found = RegistryOptions(insecure=False, authfile=authfile).credentials().get(host)
    return (found.username, found.password) if found is not None else None


def error_of(response: httpx.Response) -> tuple[str, str]:
    """The service's ``{"error": {"code", "message"}}``, or the HTTP status when it is not that."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}", f"the ECR service answered HTTP {response.status_code}"


@dataclass(frozen=True)
class ServiceApi:
    service_url: str
    auth: tuple[str, str] | None

    @property
    def host(self) -> str:
        return urlsplit(self.service_url).netloc or self.service_url

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One request; its JSON answer (None for 204 or an empty body)."""
        response = self._send(method, path, json=json, params=params)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ServiceApiError(f"{redact_url(str(response.url))} did not answer with JSON") from None

    def get(self, path: str, params: dict[str, Any], model: type[_M]) -> _M:
        """GET ``path`` parsed as ``model`` (the API's own response model)."""
        response = self._send("GET", path, params=params)
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise ServiceApiError(
                f"{redact_url(str(response.url))} did not answer with the API's JSON: is it an ECR service?"
            ) from None

    def _send(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        url = self.service_url.rstrip("/") + path
        try:
            with httpx.Client(timeout=_TIMEOUT, auth=self.auth) as client:
                response = client.request(
                    method, url, json=json, params={k: v for k, v in (params or {}).items() if v is not None}
                )
        except httpx.HTTPError as err:
            raise ServiceApiError(
                f"cannot reach the ECR service at {redact_url(self.service_url)} ({type(err).__name__}); "
                "start it with `ecr-oci serve` or point --service / $ECR_SERVICE_URL at it"
            ) from None
        if response.status_code >= 400:
            raise self._refused(response)
        return response

    def _refused(self, response: httpx.Response) -> ServiceApiError:
        code, message = error_of(response)
        status = response.status_code
        if status == 401:
            why = "no credentials" if self.auth is None else "wrong credentials"
            return ServiceApiError(
                f"{why} for {self.host}: log in with `ecr-oci login {self.host}` "
                "(or --username and --password-stdin)",
                code=code,
            )
        if status == 403:
            text = message if message.startswith("not allowed") else f"not allowed: {message}"
            return ServiceApiError(text, code=code)
        return ServiceApiError(f"{message} [{code}]", code=code, exit_code={400: 2, 409: 3}.get(status, 1))
