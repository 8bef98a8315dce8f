"""The ECR service (``ecr-oci serve``) as a local process, for ``make run`` and the tests.

    >>> from pathlib import Path
    >>> from ecr_oci.devenv.service import LocalService
    >>> svc = LocalService(Path(".run/service"), registry="127.0.0.1:5000")   # doctest: +SKIP
    >>> svc.start(detach=True).url                                           # doctest: +SKIP
    'http://127.0.0.1:8000'

Everything lives under ``root``: ``ecr.toml`` (written here), ``notification.secret`` (made once,
then reused, so a registry configured with it keeps working across restarts), ``token/key.pem`` and
``token/cert.pem`` (the token signing key and its certificate, made by :meth:`LocalService.token_auth`
before the registry starts, since the registry reads the certificate at start), ``ecr.db``,
``service.log`` and ``service.json`` (PID and port, for :meth:`LocalService.attach` and stop).

A registry for an access-controlled service (the default) is configured with
``LocalRegistry(..., auth_token=svc.token_auth())``: the service is its token server.
The process is ``python -m ecr_oci serve --config ROOT/ecr.toml``; it is stopped only by its
recorded PID, and only while that PID still runs that command line.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Self

import httpx

from ecr_oci.devenv._process import (
    FileBackedService,
    pid_cmdline,
)
from ecr_oci.server.services.tokens import TokenIssuer

__all__ = ["LocalService"]

CONFIG_NAME = "ecr.toml"
SECRET_NAME = "notification.secret"  # noqa: S105 - a file name, not a secret
TOKEN_KEY_NAME = "token/key.pem"  # noqa: S105 - a file name, not a secret
TOKEN_CERT_NAME = "token/cert.pem"  # noqa: S105 - a file name, not a secret
STATE_NAME = "service.json"
LOG_NAME = "service.log"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class LocalService(FileBackedService):
    """``ecr-oci serve`` on ``127.0.0.1:PORT`` against ``registry`` (plain HTTP).

    ``database_url`` defaults to SQLite in ``root``; ``settings`` adds any other setting
    (``reconcile_interval`` …) to the TOML file.
    """

    CONFIG_NAME = CONFIG_NAME
    LOG_NAME = LOG_NAME
    STATE_NAME = STATE_NAME
    KIND = "ECR service"

    def __init__(
        self,
        root: Path,
        *,
        registry: str,
        port: int | None = None,
        database_url: str | None = None,
        settings: dict[str, Any] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        from ecr_oci.devenv.registry import free_port

        self.root = Path(root).absolute()
        self.registry = registry
        self.port = port if port is not None else free_port()
        self.database_url = database_url or f"sqlite:///{self.root / 'ecr.db'}"
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        """Where the registry's notifications go."""
        return f"{self.url}/events"

    @property
    def secret(self) -> str:
        """The notification secret, generated on first use and kept in ``root`` (mode 0600)."""
        path = self.root / SECRET_NAME
        if path.exists():
            return path.read_text().strip()
        self.root.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return value

    def notification_endpoint(self, **extra: Any) -> dict[str, Any]:
        """The ``notifications.endpoints[]`` entry that points a registry at this service."""
        return {
            "name": "ecr-service",
            "url": self.events_url,
            "headers": {"Authorization": [f"Bearer {self.secret}"]},
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
            **extra,
        }

    @property
    def token_key_file(self) -> Path:
        return Path(self.settings.get("token_key_file") or self.root / TOKEN_KEY_NAME)

    @property
    def token_cert_file(self) -> Path:
        return Path(self.settings.get("token_cert_file") or self.root / TOKEN_CERT_NAME)

    def token_issuer(self) -> TokenIssuer:
        """The service's registry-token signer (what its ``/token`` signs with); its key and
        certificate are made now when missing, exactly as the service makes them at start."""
        return TokenIssuer(
            self.token_key_file,
            self.token_cert_file,
            issuer=str(self.settings.get("token_issuer", "ecr-oci")),
            service=str(self.settings.get("token_service", "ecr-registry")),
        )

    def token_auth(self) -> dict[str, str]:
        """The registry's ``auth.token`` block for this service: realm ``URL/token``, service,
        issuer, and the certificate as ``rootcertbundle`` (made now, so it exists before the
        registry starts)."""
        return self.token_issuer().registry_auth_config(f"{self.url}/token")

    def write_config(self) -> Path:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "registry": self.registry,
            "registry_insecure": True,
            "notification_secret": self.secret,
            "host": "127.0.0.1",
            "port": self.port,
            "token_key_file": str(self.token_key_file),
            "token_cert_file": str(self.token_cert_file),
            **self.settings,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()))
        self.config_path.chmod(0o600)  # it holds the secret
        return self.config_path

    def _argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ecr_oci",
            "serve",
            "--config",
            str(self.config_path),
            "--log-level",
            "info",
        ]

    def start(self, *, detach: bool = False) -> Self:
        """Start the service and wait until it answers; ``detach`` outlives this process."""
        if self.is_running():
            return self
        self.write_config()
        # the child must not take ECR_* from our environment: the config file is the whole truth
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECR_")}
        self._launch(self._argv(), env=env, detach=detach)
        return self

    def _answers(self, client: httpx.Client) -> bool:
        return client.get(f"{self.url}/openapi.json").status_code == 200

    def _is_our_process(self, pid: int) -> bool:
        return pid_cmdline(pid)[-4:-2] == ["--config", str(self.config_path)]

    def _state(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "url": self.url,
            "registry": self.registry,
            "config": str(self.config_path),
            "log": str(self.log_path),
        }

    @classmethod
    def attach(cls, root: Path) -> LocalService:
        """The service recorded under ``root`` by a detached :meth:`start`."""
        state = cls.read_state(root)
        service = cls(root, registry=str(state["registry"]), port=int(state["port"]))
        service._pid = int(state["pid"])
        return service
