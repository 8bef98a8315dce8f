"""The ``ecr.yaml`` bundle description as pydantic models (issue 2, part 3).

    >>> spec = BundleSpec.model_validate({
    ...     "apiVersion": "ecr.waggle-sensor.org/v1", "kind": "Bundle",
    ...     "metadata": {"namespace": "waggle", "name": "hello-sensor", "version": "0.1.0",
    ...                  "description": "Says hello"},
    ...     "runtime": {"base": "127.0.0.1:5000/base/busybox:1.36",
    ...                 "platforms": ["linux/arm64", "linux/arm/v7"],
    ...                 "entrypoint": ["/bin/sh", "/app/run.sh"]},
    ...     "code": {"path": "src"},
    ... })
    >>> spec.repository, [str(p) for p in spec.platform_list() or []]
    ('waggle/hello-sensor', ['linux/arm64', 'linux/arm/v7'])
    >>> spec.code.target, spec.code.compression, spec.to_json()["apiVersion"]
    ('/app', 'gzip', 'ecr.waggle-sensor.org/v1')

Every model forbids unknown keys: a misspelt key (``entrypiont``) must fail loudly rather than
be ignored and produce an image that does not start. Values check themselves when built (STYLE
§2), so an invalid spec never travels past :func:`ecr_oci.bundle.spec_loader.load_spec`, which
maps each error to the file, line and field. Validators raise ``ValueError`` messages that say
how to fix the value.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from ecr_oci.bundle.spec_license import normalize_license
from ecr_oci.errors import InvalidReferenceError
from ecr_oci.oci.models import Platform
from ecr_oci.oci.redact import redact_url
from ecr_oci.reference import Reference

API_VERSION = "ecr.waggle-sensor.org/v1"
KIND = "Bundle"

# namespace/name: the rule, which must also be a valid distribution path component
# (``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``) or the push would fail later with a registry error.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-_]{1,63}$")
_REPO_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
# semver.org's recommended regular expression, less build metadata (see _semver).
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_ORCID_RE = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INPUT_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_CPU_RE = re.compile(r"^(?:\d+(?:\.\d+)?|\d+m)$")
_MEMORY_RE = re.compile(r"^\d+(?:\.\d+)?(?:[KMGTPE]i?|k)?$")

#: ``GOOS``/``GOARCH`` values the OCI image-index spec names for ``platform.os``/``architecture``.
KNOWN_OS = frozenset(
    {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "illumos", "solaris", "aix"}
)
KNOWN_ARCHITECTURES = frozenset(
    {"amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64",
     "mipsle", "mips", "loong64", "wasm"}
)  # fmt: skip
_ARCH_HINTS = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm/v7",
               "armv7": "arm/v7", "armv7l": "arm/v7", "armv6": "arm/v6", "i386": "386",
               "i686": "386"}  # fmt: skip
_VARIANT_RE = re.compile(r"^v[0-9]+(?:\.[0-9]+)?$")


# --- platforms ---------------------------------------------------------------------------------


def check_platform(text: str) -> str:
    """Validate an OCI platform ``os/architecture[/variant]`` (image-index spec ``platform``).

    Waggle nodes are ``linux/arm64`` (Jetson, RPi 4) and ``linux/amd64``. Raises ``ValueError``
    naming accepted values (``x86_64`` → ``amd64``); :meth:`BundleSpec.platform_list` turns the
    strings into :class:`ecr_oci.oci.models.Platform`.
    """
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(
            f"platform {text!r} is not os/architecture[/variant]; "
            "use e.g. linux/amd64, linux/arm64 or linux/arm/v7"
        )
    os_, arch = parts[0], parts[1]
    if os_ not in KNOWN_OS:
        raise ValueError(f"platform {text!r}: unknown os {os_!r}; use e.g. linux")
    if arch not in KNOWN_ARCHITECTURES:
        hint = _ARCH_HINTS.get(arch)
        advice = f"write {os_}/{hint}" if hint else "use amd64, arm64 or arm (Go GOARCH names)"
        raise ValueError(f"platform {text!r}: unknown architecture {arch!r}; {advice}")
    if len(parts) == 3 and not _VARIANT_RE.match(parts[2]):
        raise ValueError(f"platform {text!r}: variant {parts[2]!r} is not like v7 or v8")
    return text


# --- field validators (each raises ValueError with a fix) --------------------------------------


def check_name(value: str) -> str:
    """Validate a namespace or name (also used by ``ecr-oci init`` before writing a starter)."""
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name; use 2-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit (e.g. hello-sensor)"
        )
    if not _REPO_COMPONENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid registry path component; end with a letter or digit and "
            "do not put '-' and '_' next to each other (e.g. hello-sensor)"
        )
    return value


def _semver(value: str) -> str:
    if not _SEMVER_RE.match(value):
        raise ValueError(
            f"{value!r} is not a semantic version; use a semantic version such as 0.1.0 "
            "(MAJOR.MINOR.PATCH, optionally -prerelease like 1.0.0-rc.1)"
        )
    if "+" in value:
        # The version is the image tag; OCI tags cannot hold '+' (distribution reference grammar).
        raise ValueError(
            f"{value!r} has semver build metadata ('+...'), which an OCI tag cannot hold; "
            "drop it or use a pre-release such as 1.0.0-build.5"
        )
    if len(value) > 128:
        raise ValueError("version is longer than 128 characters, the OCI tag limit")
    return value


def _orcid(value: str) -> str:
    if not _ORCID_RE.match(value):
        raise ValueError(
            f"{value!r} is not an ORCID iD; write the 16 characters as 0000-0002-1825-0097 "
            "(no https://orcid.org/ prefix)"
        )
    # ISO 7064 MOD 11-2 check digit: catches a mistyped iD before it is published.
    total = 0
    for char in value[:-1].replace("-", ""):
        total = (total + int(char)) * 2
    check = (12 - total % 11) % 11
    if value[-1] != ("X" if check == 10 else str(check)):
        raise ValueError(f"{value!r}: the ORCID check digit does not match; copy it from orcid.org")
    return value


def _email(value: str) -> str:
    if not _EMAIL_RE.match(value):
        raise ValueError(f"{value!r} is not an e-mail address; write it as name@example.org")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL; write it as https://host/path")
    if parts.username or parts.password:
        raise ValueError(f"{redact_url(value)!r} contains credentials; remove the user:password@ part")
    return value


def _base_reference(value: str) -> str:
    try:
        Reference.parse(value)
    except InvalidReferenceError as err:
        raise ValueError(str(err)) from None
    return value


def _relative_path(value: str) -> str:
    """A path inside the bundle directory: relative, POSIX, without ``..``."""
    if not value or value.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", value):
        raise ValueError(
            f"{value!r} must be a path relative to the bundle directory (e.g. src), not absolute"
        )
    if "\\" in value:
        raise ValueError(f"{value!r}: write paths with '/' (POSIX), not '\\'")
    if ".." in value.split("/"):
        raise ValueError(f"{value!r} leaves the bundle directory ('..'); move the files inside it")
    return posixpath.normpath(value)


def _image_path(value: str) -> str:
    """A path inside the image: absolute, POSIX, without ``..``."""
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path in the image, such as /app")
    if "\\" in value or ".." in value.split("/"):
        raise ValueError(f"{value!r} must be a POSIX path without '..' or '\\', such as /app")
    return posixpath.normpath(value)


def _target_path(value: str) -> str:
    """Where a layer unpacks; ``/`` would unpack over (and hide the intent of) the base image."""
    normalized = _image_path(value)
    if normalized == "/":
        raise ValueError("'/' would unpack over the base image's root; use a folder such as /app")
    return normalized


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _quantity_text(value: Any) -> Any:
    """Accept ``cpu: 1`` and ``cpu: 0.5`` as YAML numbers; store Kubernetes quantity strings."""
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int | float) else value


def _cpu(value: str) -> str:
    if not _CPU_RE.match(value):
        raise ValueError(f'{value!r} is not a CPU quantity; write e.g. "1", "0.5" or "500m"')
    return value


def _memory(value: str) -> str:
    if not _MEMORY_RE.match(value):
        raise ValueError(f'{value!r} is not a memory quantity; write e.g. "512Mi" or "2Gi"')
    return value


Name = Annotated[str, AfterValidator(check_name)]
SemVer = Annotated[str, AfterValidator(_semver)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
TargetPath = Annotated[str, AfterValidator(_target_path)]
ImagePath = Annotated[str, AfterValidator(_image_path)]
NonEmpty = Annotated[str, AfterValidator(_non_empty)]


# --- models ------------------------------------------------------------------------------------


class _Model(BaseModel):
    """Shared settings: unknown keys are errors, values are immutable, JSON uses the YAML names."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class Author(_Model):
    name: NonEmpty
    email: Annotated[str, AfterValidator(_email)] | None = None
    orcid: Annotated[str, AfterValidator(_orcid)] | None = None


class Source(_Model):
    """Where the code came from; filled from git by the loader when omitted (see ``load_spec``)."""

    url: HttpUrl | None = None
    commit: str | None = None
    #: True when the work tree had uncommitted changes under the bundle directory at load time.
    dirty: bool | None = None

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str | None) -> str | None:
        if value is not None and not _COMMIT_RE.match(value):
            raise ValueError(
                f"{value!r} is not a full git commit id; use the 40 hex characters of `git rev-parse HEAD`"
            )
        return value


class Metadata(_Model):
    namespace: Name
    name: Name
    version: SemVer
    description: NonEmpty
    authors: list[Author] = Field(default_factory=list)
    license: Annotated[str, AfterValidator(normalize_license)] | None = None
    keywords: list[NonEmpty] = Field(default_factory=list)
    homepage: HttpUrl | None = None
    source: Source | None = None


class Resources(_Model):
    """Scheduling hints (Kubernetes quantities); ``gpu`` says whether the plugin uses one."""

    cpu: Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_cpu)] | None = None
    memory: Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_memory)] | None = None
    gpu: Literal["none", "optional", "required"] = "none"


class Runtime(_Model):
    base: Annotated[str, AfterValidator(_base_reference)]
    #: ``None`` = every platform the base image offers.
    platforms: list[Annotated[str, AfterValidator(check_platform)]] | None = None
    entrypoint: list[NonEmpty] = Field(min_length=1)
    cmd: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    #: ``None`` keeps the base image's working directory.
    workdir: ImagePath | None = None
    #: Annotations only (``pytorch>=2.0``): ecr-oci does not install them; the base must have them.
    requirements: list[NonEmpty] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one platform, or omit the key for all of the base's")
            duplicates = sorted({p for p in value if value.count(p) > 1})
            if duplicates:
                raise ValueError(f"platform {duplicates[0]} is listed twice; list each once")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"{key!r} is not an environment variable name; use letters, digits and '_'")
        return value


InputType = Literal["int", "float", "str", "bool"]
#: Per input type: the Python types a default may have, how to name the type, an example value.
_INPUT_KINDS: dict[str, tuple[tuple[type, ...], str, str]] = {
    "int": ((int,), "an int", "30"),
    "float": ((int, float), "a float", "0.5"),
    "str": ((str,), "text", '"text"'),
    "bool": ((bool,), "a bool", "true"),
}


class Input(_Model):
    """A plugin parameter; by convention the code reads it from the variable ``env_name``."""

    id: str
    type: InputType
    default: Any = None
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _INPUT_ID_RE.match(value):
            raise ValueError(
                f"{value!r} is not an input id; use lower-case letters, digits, '_' or '-', "
                "starting with a letter (e.g. interval)"
            )
        return value

    @field_validator("default")
    @classmethod
    def _default(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if value is None or kind is None:
            return value
        python, kind_name, example = _INPUT_KINDS[kind]
        ok = isinstance(value, python) and (kind == "bool" or not isinstance(value, bool))
        if not ok:
            quoted = isinstance(value, str) and kind != "str"
            raise ValueError(
                f"default {value!r} is not of type {kind}; write {kind_name} such as "
                f"{example}" + (" without quotes (YAML reads quoted values as text)" if quoted else "")
            )
        return float(value) if kind == "float" else value

    @property
    def env_name(self) -> str:
        """``interval`` → ``INTERVAL``; ``frame-rate`` → ``FRAME_RATE``."""
        return input_env_name(self.id)


def input_env_name(input_id: str) -> str:
    """The environment variable an input reaches the code as: ``frame-rate`` → ``FRAME_RATE``."""
    return input_id.upper().replace("-", "_")


def env_text(value: object) -> str:
    """An input value as environment text (``true``/``false`` for booleans, as YAML wrote them)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class Code(_Model):
    path: RelativePath
    target: TargetPath = "/app"
    #: Glob patterns (relative to ``path``) left out of the code layer.
    exclude: list[NonEmpty] = Field(default_factory=list)
    compression: Literal["gzip", "zstd"] = "gzip"


class Model(_Model):
    path: RelativePath
    target: TargetPath = "/models"
    framework: str | None = None
    format: str | None = None
    description: str | None = None
    #: ``auto``: compress, but store the layer uncompressed when that saves < 10 % (weights rarely
    #: compress, and an uncompressed layer is faster to push and to unpack on the node).
    compression: Literal["auto", "none", "gzip", "zstd"] = "auto"


class Data(_Model):
    """Optional source or training data: pushed with the bundle, never in the runnable image."""

    path: RelativePath
    description: str | None = None


class Profile(_Model):
    """An initial performance profile (``application/vnd.waggle.ecr.profile.v1+json``)."""

    path: RelativePath


class BundleSpec(_Model):
    """The whole ``ecr.yaml``. ``code`` is required; ``model``, ``data`` and ``profile`` are not."""

    api_version: Literal["ecr.waggle-sensor.org/v1"] = Field(alias="apiVersion")
    kind: Literal["Bundle"]
    metadata: Metadata
    runtime: Runtime
    inputs: list[Input] = Field(default_factory=list)
    code: Code
    model: Model | None = None
    data: Data | None = None
    profile: Profile | None = None

    def input_defaults_env(self) -> dict[str, str]:
        """The inputs' defaults as the environment the code sees (``INTERVAL=30``): the image
        carries them, and the profiler's process runtime sets them."""
        return {i.env_name: env_text(i.default) for i in self.inputs if i.default is not None}

    @field_validator("inputs")
    @classmethod
    def _unique_inputs(cls, value: list[Input]) -> list[Input]:
        seen: set[str] = set()
        for item in value:
            if item.env_name in seen:
                raise ValueError(f"input id {item.id!r} is used twice; give each input its own id")
            seen.add(item.env_name)
        return value

    @field_validator("model")
    @classmethod
    def _own_target(cls, value: Model | None, info: ValidationInfo) -> Model | None:
        code = info.data.get("code")  # validated first: fields validate in declaration order
        if value is not None and code is not None and value.target == code.target:
            raise ValueError(
                f"model.target and code.target are both {code.target}; "
                "give the model its own folder such as /models"
            )
        return value

    @property
    def repository(self) -> str:
        """``namespace/name``: the repository this bundle is pushed to."""
        return f"{self.metadata.namespace}/{self.metadata.name}"

    def platform_list(self) -> list[Platform] | None:
        """The declared platforms, or ``None`` for "every platform the base image offers"."""
        if self.runtime.platforms is None:
            return None
        return [Platform.parse(text) for text in self.runtime.platforms]

    def to_json(self) -> dict[str, Any]:
        """The normalised spec as JSON data (YAML key names, unset optional keys left out).

        This is what goes into the bundle config's ``spec`` and what ``ecr-oci validate --json``
        prints.
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
