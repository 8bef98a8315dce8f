"""The performance profile as pydantic models (``application/vnd.waggle.ecr.profile.v1+json``).

    >>> profile = Profile.model_validate({"device": {"arch": "linux/amd64"},
    ...                                   "measures": {"wall_s": 5.0, "peak_rss_bytes": 1024}})
    >>> profile.device.arch if profile.device else None
    'linux/amd64'
    >>> profile.to_json()["measures"]
    {'wall_s': 5.0, 'peak_rss_bytes': 1024}

The JSON Schema is ``mediatypes/profile.schema.json``; ``tests/unit/profile/test_model.py`` holds the
two together. Version 1 stays permissive (unknown keys are kept, every field optional) so initial
profiles written before issue 6 stay valid; the known fields are typed, so ``"wall_s": "slow"`` is an
error that names the field. A field that was not measured is absent, never zero (a GPU utilisation
of 0 on a machine without a GPU would read as "measured: idle").

:func:`load_profile` is the boundary: a file that does not hold a valid profile raises
:class:`ProfileError` with the file and the dotted field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ecr_oci.errors import Error

#: A profile is a summary; a bigger file is a mistake (a raw log, a model).
MAX_PROFILE_BYTES = 1 << 20


class ProfileError(Error):
    """A profile file is missing, not JSON, or has a field of the wrong type.

    ``file`` and ``field`` (dotted, e.g. ``measures.wall_s``) name what to fix.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str, field: str | None = None) -> None:
        self.file = file
        self.field = field
        super().__init__(f"{file}: {field}: {message}" if field else f"{file}: {message}")


class _Model(BaseModel):
    """Unknown keys are kept (schema v1 is open); values are immutable once built."""

    # strict: "5" is not a number here either (the schema says number), 5 still is a float
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


NonNegative = Field(default=None, ge=0)


class Device(_Model):
    """Where it ran. ``name`` is chosen by the operator (``--device-name``), never the hostname."""

    name: str | None = None
    model: str | None = None
    #: OCI platform ``os/architecture[/variant]``: picks the platform manifest a profile attaches to.
    arch: str | None = None
    cpu: str | None = None
    cpu_cores: int | None = Field(default=None, ge=1)
    #: bytes, or a quantity such as ``8Gi`` (initial profiles written by hand)
    memory: int | str | None = None
    accelerator: str | None = None
    accelerator_memory_bytes: int | None = NonNegative


class Workload(_Model):
    """What ran: the reference or directory, its arguments and inputs, how long it was let run."""

    reference: str | None = None
    args: list[str] | None = None
    inputs: dict[str, str] | None = None
    duration_s: float | None = NonNegative
    description: str | None = None


class Measures(_Model):
    """Whole-run figures; each is absent when the device could not measure it."""

    #: more measures may be added by later versions, each a number (as the schema says)
    __pydantic_extra__: dict[str, float] = Field(init=False)

    wall_s: float | None = NonNegative
    cpu_s: float | None = NonNegative
    cpu_percent_p50: float | None = NonNegative
    cpu_percent_p95: float | None = NonNegative
    peak_rss_bytes: int | None = NonNegative
    gpu_util_percent_peak: float | None = NonNegative
    gpu_memory_peak_bytes: int | None = NonNegative
    energy_j: float | None = NonNegative
    exit_status: int | None = None
    samples: int | None = NonNegative


class MetricSummary(_Model):
    """A distribution the plugin reported: nearest-rank percentiles (see :mod:`.metrics`)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    count: int | None = NonNegative
    unit: str | None = None


class Profile(_Model):
    """One profile: device, software, workload, measures and the plugin's metrics."""

    created: str | None = None
    device: Device | None = None
    software: dict[str, str] | None = None
    workload: Workload | None = None
    measures: Measures | None = None
    metrics: dict[str, MetricSummary] | None = None

    def to_json(self) -> dict[str, Any]:
        """The document as JSON data, unset fields left out (absent, not null)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_bytes(self) -> bytes:
        """Indented JSON with a final newline: what ``profile run`` writes and ``attach`` pushes."""
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()

    @property
    def arch(self) -> str | None:
        return self.device.arch if self.device else None

    @property
    def device_label(self) -> str | None:
        """See :func:`label_of_device`."""
        return label_of_device(self.device.model_dump()) if self.device else None


def label_of_device(device: dict[str, Any]) -> str | None:
    """What a profile's ``device`` (as JSON) is called: its ``name``, else its ``model``, else
    its ``cpu``; ``None`` when none is known (the index groups such runs under ``unknown``). On the
    JSON so that the indexer, which holds a validated profile as a mapping, need not validate it
    again."""
    for key in ("name", "model", "cpu"):
        if device.get(key):
            return str(device[key])
    return None


def parse_profile(data: bytes, *, source: str) -> Profile:
    """Parse and validate a profile document; raises :class:`ProfileError` naming ``source``."""
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"larger than {MAX_PROFILE_BYTES >> 20} MiB; a profile is a summary", file=source)
    try:
        document = json.loads(data)
    except json.JSONDecodeError as err:
        raise ProfileError(
            f"not JSON (line {err.lineno} column {err.colno}: {err.msg})", file=source
        ) from None
    except UnicodeDecodeError:
        raise ProfileError("not UTF-8 JSON", file=source) from None
    if not isinstance(document, dict):
        raise ProfileError(f"must hold a JSON object, not {type(document).__name__}", file=source)
    try:
        return Profile.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        got = repr(first["input"])
        got = got if len(got) <= 40 else got[:37] + "..."
        raise ProfileError(f"{first['msg']} (got {got})", file=source, field=field) from None


def load_profile(path: Path) -> Profile:
    """Read ``path`` as a profile; raises :class:`ProfileError` (missing, not JSON, a bad field)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ProfileError(f"cannot read it ({err.strerror})", file=str(path)) from None
    return parse_profile(data, source=str(path))
