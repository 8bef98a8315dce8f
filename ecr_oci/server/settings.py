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

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ecr_oci.errors import Error

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
    #: Apply the Alembic migrations when the app starts.
    migrate_on_start: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

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
