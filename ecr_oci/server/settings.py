"""The service's settings: one object, from a TOML file and/or ``ECR_*`` environment variables.

    >>> s = Settings(registry="127.0.0.1:5000")
    >>> s.database_url, s.reconcile_interval
    ('sqlite:///.run/ecr.db', 300.0)

Precedence (highest first): explicit keyword arguments, ``ECR_*`` variables (``ECR_DATABASE_URL``,
``ECR_NOTIFICATION_SECRET`` …), the TOML file given to :meth:`Settings.load`, the defaults. This is
the only module of the service that reads the environment or a config file (STYLE.md §8); everything
else receives a :class:`Settings` or plain arguments.

Example ``ecr.toml``::

    database_url = "postgresql+psycopg://ecr@127.0.0.1:5432/ecr"
    registry = "127.0.0.1:5000"
    registry_insecure = true
    notification_secret = "…"      # or ECR_NOTIFICATION_SECRET
    reconcile_interval = 300
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ecr_oci.errors import Error
from ecr_oci.mediatypes import check_deployment_name

__all__ = ["Settings", "SettingsError"]


class SettingsError(Error):
    """The config file is missing, not TOML, or holds a value of the wrong type."""

    exit_code = 2


class Settings(BaseSettings):
    """Everything ``create_app`` and the ``serve``/``db``/``index`` commands need."""

    model_config = SettingsConfigDict(env_prefix="ECR_", extra="forbid", frozen=True)

    #: SQLAlchemy URL: ``sqlite:///path.db`` (default, one file, WAL) or
    #: ``postgresql+psycopg://user@host:port/db`` (``postgresql://`` is accepted and mapped).
    database_url: str = "sqlite:///.run/ecr.db"
    #: The registry the index mirrors, as ``host:port``.
    registry: str = "127.0.0.1:5000"
    #: Plain HTTP to the registry (the dev registry has no TLS).
    registry_insecure: bool = False
    #: Shared secret the registry sends as ``Authorization: Bearer <secret>`` on notifications.
    #: ``None`` refuses every notification (401): an open endpoint would let anyone trigger fetches.
    notification_secret: SecretStr | None = None
    #: Seconds between periodic reconcile passes in the service; 0 disables them.
    reconcile_interval: float = Field(default=300.0, ge=0)
    #: Reconcile once when the service starts (recovers events lost while it was down).
    reconcile_on_start: bool = True
    #: Registry reads in parallel when the indexing worker plans a batch of queued events.
    index_workers: int = Field(default=8, ge=1, le=64)
    #: Most queued events the indexing worker takes per batch (one write transaction).
    index_batch: int = Field(default=100, ge=1, le=10_000)
    #: Seconds the idle indexing worker waits after a wake-up, so that a burst becomes one batch.
    index_linger: float = Field(default=0.05, ge=0, le=10)
    #: Run the indexing worker in a process of its own (not for an in-memory SQLite database),
    #: so that ``POST /events`` and indexing use two cores; false: a thread of the service.
    index_process: bool = True
    #: Apply the Alembic migrations when the app starts.
    migrate_on_start: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: Access control (docs/access.md): API callers authenticate, each sees only what it may
    #: pull, and ``/token`` is the registry's token server. Off: one trusted user, everything
    #: visible, no ``/token`` (a dev index of an open registry).
    access_control: bool = True
    #: The registry's ``auth.token.issuer`` and ``auth.token.service`` (the JWT's iss and aud).
    token_issuer: str = "ecr-oci"  # noqa: S105 - a name, not a secret
    token_service: str = "ecr-registry"  # noqa: S105 - a name, not a secret
    #: The token signing key (EC P-256, PEM) and its self-signed certificate (the registry's
    #: ``rootcertbundle``); both are made on first start when missing.
    token_key_file: Path = Path(".run/token/key.pem")
    token_cert_file: Path = Path(".run/token/cert.pem")
    #: Seconds between reads of the rules version: a rule changed through another replica (or
    #: straight in the database) applies within this long; through this one, at once. 0: every
    #: request reads it (tests that seed rules in the database directly).
    rules_recheck: float = Field(default=0.5, ge=0, le=60)
    #: Lifetime of a registry token in seconds.
    token_ttl: int = Field(default=300, ge=30, le=3600)
    #: Admission webhook (``POST /admission/validate``): cosign public key files (PEM); an image
    #: must be signed by one of them. None configured: every image is denied.
    admission_trusted_keys: list[Path] = Field(default_factory=list)
    #: Kubernetes namespace → deployment whose approval its pods' images need
    #: (``{"prod-ns" = "waggle-prod"}``); other namespaces need a signature only.
    admission_deployments: dict[str, str] = Field(default_factory=dict)
    #: Image prefixes admitted unchecked, on normalized names (``docker.io/library/busybox``,
    #: ``registry.k8s.io/``); every other image must come from ``registry``.
    admission_exempt_images: list[str] = Field(default_factory=list)
    #: Seconds a verdict per (digest, deployment, keys) is reused (never past an approval's
    #: expiry); 0 disables the cache. Tags are resolved on every review.
    admission_cache_ttl: float = Field(default=30.0, ge=0, le=3600)
    #: The bearer token the Kubernetes API server sends to the webhook (its admission kubeconfig's
    #: ``token``). Required: the webhook reads private bundles with the service's own access, so
    #: an open one would answer anybody's questions about them. None: every review is refused (401).
    admission_token: SecretStr | None = None

    @field_validator("admission_deployments")
    @classmethod
    def _deployment_names(cls, value: dict[str, str]) -> dict[str, str]:
        for deployment in value.values():
            check_deployment_name(deployment)
        return value

    @classmethod
    def load(cls, config_path: Path | None = None, **overrides: Any) -> Settings:
        """Settings from ``config_path`` (TOML; optional), then ``ECR_*`` variables, then ``overrides``.

        Raises :class:`SettingsError` when the file cannot be read or a value is invalid.
        """
        file_values: dict[str, Any] = {}
        if config_path is not None:
            try:
                file_values = tomllib.loads(config_path.read_text())
            except OSError as err:
                raise SettingsError(f"cannot read config {config_path}: {err.strerror}") from None
            except tomllib.TOMLDecodeError as err:
                raise SettingsError(f"{config_path}: not valid TOML: {err}") from None
        given = {k: v for k, v in overrides.items() if v is not None}

        class _WithFile(Settings):
            """This call's source order: keywords, then ``ECR_*``, then the file (then defaults)."""

            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                file_source = InitSettingsSource(settings_cls, init_kwargs=file_values)
                return (init_settings, env_settings, file_source)

        try:
            merged = _WithFile(**given)
        except ValueError as err:
            where = f"config {config_path} or ECR_* variables" if config_path else "ECR_* variables"
            raise SettingsError(f"invalid settings ({where}): {err}") from None
        # a plain Settings (same values: keywords win over the environment it reads again)
        return Settings(**{name: getattr(merged, name) for name in Settings.model_fields})
