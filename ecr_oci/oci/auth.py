"""Registry authentication as an ``httpx.Auth`` flow: the distribution bearer-token challenge.

    >>> auth = RegistryAuth(credentials=None)     # anonymous: tokens are still fetched when challenged
    >>> isinstance(auth, httpx.Auth)
    True

The flow (distribution "token authentication specification"): send the request with the token cached
for that repository; on ``401`` with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` fetch a
token from the realm (basic credentials when we have them, anonymous otherwise), then resend. A
``Basic`` challenge gets the basic credentials directly. Tokens are cached per repository and scope
so a push asks once. Requests with streamed bodies cannot be replayed, so the client makes a body-less
request first (``POST /blobs/uploads/``) which establishes the push token.

Credentials come from the caller — see :func:`load_docker_config` for the ``~/.docker/config.json``
format; the library itself never looks in the home directory.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ecr_oci.errors import AuthError
from ecr_oci.oci.redact import redact_url

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a log line
        return f"Credentials(username={self.username!r}, password='***')"


def load_docker_config(path: Path) -> dict[str, Credentials]:
    """Read ``auths`` of a docker/podman auth file: ``{"auths": {"host": {"auth": b64(user:pass)}}}``.

    Entries using credential helpers (``credsStore``) are not supported and are skipped. A missing file
    gives ``{}``; a file that is not valid JSON raises :class:`AuthError` naming the file.
    """
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise AuthError(f"cannot read credentials file {path}: {err}", url=str(path)) from None
    if not isinstance(document, dict):
        raise AuthError(f"credentials file {path} is not a JSON object", url=str(path))
    found: dict[str, Credentials] = {}
    for host, entry in (document.get("auths") or {}).items():
        if not isinstance(entry, dict):
            continue
        if "auth" in entry:
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                continue
        elif "username" in entry and "password" in entry:
            user, password = entry["username"], entry["password"]
        else:
            continue
        key = host.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        found[key] = Credentials(user, password)
    return found


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Bearer-challenge auth for one registry host, with an optional username/password."""

    # Only the token server's answer is read (in auth_flow): httpx would otherwise read every
    # response body before handing it back, slurping whole blobs that iter_blob means to stream.
    requires_response_body = False

    def __init__(self, *, credentials: Credentials | None) -> None:
        self._credentials = credentials
        self._tokens: dict[str, _Token] = {}  # repository (or "" for /v2/) -> token
        self._basic = False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        repository = repository_of(request.url.path)
        self._apply(request, repository)
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params_text = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self._credentials is None:
                return
            self._basic = True
        elif scheme.lower() == "bearer":
            params = dict(_PARAM_RE.findall(params_text))
            scopes = [params["scope"]] if params.get("scope") else []
            scopes += request.extensions.get("ecr_extra_scopes", [])
            token_response = yield self._token_request(params, scopes)
            token_response.read()  # sync-only flow: RegistryClient uses httpx.Client
            self._tokens[repository] = self._parse_token(token_response)
        else:
            return
        self._apply(request, repository)
        yield request

    def _apply(self, request: httpx.Request, repository: str) -> None:
        token = self._tokens.get(repository)
        if token is not None and token.expires_at > time.monotonic():
            request.headers["Authorization"] = f"Bearer {token.value}"
        elif self._basic and self._credentials is not None:
            request.headers["Authorization"] = _basic_header(self._credentials)

    def _token_request(self, params: dict[str, str], scopes: list[str]) -> httpx.Request:
        if "realm" not in params:
            raise AuthError("registry sent a Bearer challenge without a realm", url="")
        query: list[tuple[str, str | int | float | bool | None]] = [("service", params.get("service", ""))]
        query += [("scope", scope) for scope in scopes]
        headers = {}
        if self._credentials is not None:
            query.append(("account", self._credentials.username))
            headers["Authorization"] = _basic_header(self._credentials)
        return httpx.Request("GET", params["realm"], params=query, headers=headers)

    @staticmethod
    def _parse_token(response: httpx.Response) -> _Token:
        url = redact_url(str(response.request.url))
        if response.status_code in (401, 403):
            raise AuthError("the token server refused the credentials", url=url, status=response.status_code)
        if response.status_code != 200:
            raise AuthError("the token server failed", url=url, status=response.status_code)
        try:
            body = response.json()
            value = body.get("token") or body["access_token"]
            expires_in = int(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError):
            raise AuthError("the token server sent no token", url=url, status=200) from None
        # renew a little early so a long push does not hit an expired token
        return _Token(value=value, expires_at=time.monotonic() + max(expires_in - 10, 5))


def _basic_header(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def repository_of(path: str) -> str:
    """The repository a distribution API path names (``/v2/<name>/manifests/…``), or ``""``."""
    match = _REPO_PATH_RE.match(path)
    return match.group(1) if match else ""
