"""Performance profiles in the index (issue 6): runs, per-device aggregates, search filters.

    >>> MetricBound.parse("inference_ms:p95<200")
    MetricBound(metric='inference_ms', stat='p95', op='<', value=200.0)
    >>> parse_bytes("2GiB"), parse_bytes("512M"), parse_bytes("1048576")
    (2147483648, 512000000, 1048576)
    >>> MetricSort.parse("metric:inference_ms:p95")
    MetricSort(metric='inference_ms', stat='p95')

A profile referrer (``artifactType`` :attr:`~ecr_oci.mediatypes.MediaType.PROFILE`, subject the
platform manifest that ran) becomes one :class:`~ecr_oci.server.db.models.ProfileRun` when the
indexer stores it (:func:`sync_profile`); its profile layer is read at fetch time
(:func:`profile_details`) and validated with :class:`~ecr_oci.profile.model.Profile`. A layer that
is not a valid profile leaves the manifest indexed as kind ``profile`` with no run (logged).

The runs of one device on one platform manifest are aggregated into a
:class:`~ecr_oci.server.db.models.ProfileSummary` (:func:`refresh_summaries`): each figure is the
**median across runs** (one slow or lucky run does not decide; with one run it is that run's
figure), each metric statistic the median of the runs' statistics and its ``count`` their sum;
``exit_status`` and ``latest`` are the newest run's. Search filters and the metric sort read the
summaries: a version matches when one of its (platform, device) summaries passes every performance
filter at once (:func:`performance_clause`).

Nothing here speaks HTTP: malformed filter text raises
:class:`~ecr_oci.server.services.errors.InvalidInputError` ``BAD_PARAMETER``.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Subquery, and_, delete, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError
from ecr_oci.mediatypes import MediaType
from ecr_oci.profile.model import MAX_PROFILE_BYTES, ProfileError, label_of_device, parse_profile
from ecr_oci.server.db.models import (
    ManifestRow,
    Platform,
    ProfileMetric,
    ProfileRun,
    ProfileSummary,
    Version,
)
from ecr_oci.server.schemas import DeviceProfile, MetricFigures, ProfileFigures
from ecr_oci.server.services.errors import InvalidInputError

__all__ = [
    "METRIC_STATS",
    "MetricBound",
    "MetricSort",
    "PerformanceFilters",
    "declared_profile_details",
    "device_profiles",
    "metric_sort_rows",
    "parse_bytes",
    "performance_clause",
    "profile_details",
    "refresh_summaries",
    "sync_profile",
]

log = logging.getLogger("ecr_oci.server.profiles")

#: The statistics a metric filter or sort may name (the profile's ``metrics.<name>`` keys).
METRIC_STATS = ("p50", "p95", "p99")
Stat = Literal["p50", "p95", "p99"]
#: ``max_metric`` filters accepted in one query.
MAX_METRIC_BOUNDS = 8
#: Metric names as plugins write them (``inference_ms``, ``fps``, ``decode.ms``).
_METRIC_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"
_BOUND_RE = re.compile(
    rf"^({_METRIC_NAME}):(p50|p95|p99)\s*(<=|<)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$"
)
_SORT_RE = re.compile(rf"^metric:({_METRIC_NAME}):(p50|p95|p99)$")
_SIZE_RE = re.compile(r"^([0-9]*\.?[0-9]+)\s*([KMGTP]?)(i?)B?$", re.IGNORECASE)
_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
#: An unnamed device: profiles without ``device.name`` (or model, cpu) are grouped under it.
UNKNOWN_DEVICE = "unknown"
_FIGURES = ("wall_s", "cpu_s", "peak_rss_bytes", "gpu_util_percent_peak", "gpu_memory_peak_bytes")
#: The figures that are whole numbers (the others are floats), ``exit_status`` included.
_INTEGER_FIGURES = frozenset({"peak_rss_bytes", "gpu_memory_peak_bytes", "exit_status"})


def _bad(message: str) -> InvalidInputError:
    return InvalidInputError(message, code="BAD_PARAMETER")


def parse_bytes(text: str) -> int:
    """A byte count: plain (``1048576``) or with a unit, decimal (``2GB``, ``512M``) or binary
    (``2GiB``, ``2Gi``). Raises ``BAD_PARAMETER``."""
    found = _SIZE_RE.match(text.strip())
    if not found:
        raise _bad(f"{text[:40]!r} is not a size: write bytes or e.g. 2GiB, 512MiB, 2GB")
    number, unit, binary = found.groups()
    if binary and not unit:
        raise _bad(f"{text[:40]!r} is not a size: write bytes or e.g. 2GiB, 512MiB, 2GB")
    value = float(number) * (1024 if binary else 1000) ** _UNITS[unit.upper()]
    if value >= 2**63:
        raise _bad(f"{text[:40]!r} is too large")
    return int(value)


@dataclass(frozen=True)
class MetricBound:
    """``max_metric``: ``<metric>:<p50|p95|p99><`` or ``<=`` ``<number>``."""

    metric: str
    stat: Stat
    op: Literal["<", "<="]
    value: float

    @classmethod
    def parse(cls, text: str) -> MetricBound:
        """Raise ``BAD_PARAMETER`` naming the expected form."""
        found = _BOUND_RE.match(text.strip())
        if not found:
            raise _bad(
                f"max_metric {text[:80]!r} is not METRIC:STAT<NUMBER (STAT p50, p95 or p99; < or <=), "
                "e.g. inference_ms:p95<200"
            )
        value = float(found.group(4))
        if value != value or value in (float("inf"), float("-inf")):
            raise _bad(f"max_metric {text[:80]!r}: the bound must be a finite number")
        stat: Stat = found.group(2)  # type: ignore[assignment]  # the regex allows only these
        op: Literal["<", "<="] = "<=" if found.group(3) == "<=" else "<"
        return cls(found.group(1), stat, op, value)

    @property
    def text(self) -> str:
        return f"{self.metric}:{self.stat}{self.op}{self.value!r}"  # repr: parses back exactly


@dataclass(frozen=True)
class MetricSort:
    """``sort=metric:<name>:<p50|p95|p99>``: ascending (lower is better), best device first."""

    metric: str
    stat: Stat

    @classmethod
    def parse(cls, text: str) -> MetricSort | None:
        """The metric sort ``text`` names, ``None`` when it is not one (``BAD_PARAMETER`` when it
        starts with ``metric:`` but is malformed)."""
        if not text.startswith("metric:"):
            return None
        found = _SORT_RE.match(text)
        if not found:
            raise _bad(f"sort {text[:80]!r} is not metric:METRIC:STAT, e.g. metric:inference_ms:p95")
        stat: Stat = found.group(2)  # type: ignore[assignment]  # the regex allows only these
        return cls(found.group(1), stat)

    @property
    def text(self) -> str:
        return f"metric:{self.metric}:{self.stat}"


@dataclass(frozen=True)
class PerformanceFilters:
    """The performance part of a search, parsed: all must hold for one (platform, device) summary."""

    device: str | None = None
    max_rss: int | None = None
    bounds: tuple[MetricBound, ...] = ()

    @classmethod
    def parse(
        cls, *, device: str | None, max_rss: str | int | None, max_metric: Iterable[str]
    ) -> PerformanceFilters:
        """Raise ``BAD_PARAMETER`` for a malformed part."""
        texts = list(max_metric)
        if len(texts) > MAX_METRIC_BOUNDS:
            raise _bad(f"at most {MAX_METRIC_BOUNDS} max_metric filters")
        if device is not None:
            device = device.strip()
            if not device:
                raise _bad("device must not be empty")
        rss = None
        if max_rss is not None:
            rss = max_rss if isinstance(max_rss, int) else parse_bytes(max_rss)
        bounds = tuple(sorted({MetricBound.parse(t) for t in texts}, key=lambda b: b.text))
        return cls(device, rss, bounds)

    def __bool__(self) -> bool:
        return self.device is not None or self.max_rss is not None or bool(self.bounds)


# --- indexing ------------------------------------------------------------------------------------


def _read_profile(read: Callable[[Digest], bytes], descriptor: object, source: str) -> dict[str, Any]:
    """The profile in the blob ``descriptor`` names, as JSON data; raises :class:`ProfileError`."""
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
        raise ProfileError("has no profile layer", file=source)
    try:
        digest = Digest.parse(descriptor["digest"])
    except InvalidReferenceError:
        raise ProfileError("the profile layer's digest is not valid", file=source) from None
    if int(descriptor.get("size") or 0) > MAX_PROFILE_BYTES:
        raise ProfileError(f"the profile layer is larger than {MAX_PROFILE_BYTES >> 20} MiB", file=source)
    return parse_profile(read(digest), source=f"{source} layer {digest}").to_json()


def profile_details(
    repository: str, document: dict[str, Any], read: Callable[[Digest], bytes]
) -> dict[str, Any]:
    """``details`` of a profile manifest: ``{"profile": <the profile JSON>}``, or
    ``{"profile_error": <why>}`` when its layer is not a valid profile (logged; the manifest is
    still indexed, with no run). ``read`` fetches a small blob by digest (registry errors pass)."""
    layers = [la for la in document.get("layers") or [] if isinstance(la, dict)]
    layer = next(
        (la for la in layers if la.get("mediaType") == MediaType.PROFILE), layers[0] if layers else None
    )
    source = f"{repository} profile"
    try:
        return {"profile": _read_profile(read, layer, source)}
    except ProfileError as err:
        log.warning("%s: not aggregated (%s)", repository, err)
        return {"profile_error": str(err)[:500]}


def declared_profile_details(
    repository: str, config: dict[str, Any], read: Callable[[Digest], bytes]
) -> dict[str, Any]:
    """The bundle's initial profile (``profile:`` of ``ecr.yaml``, its ``profile`` layer): declared
    expectations, kept apart from measured runs. ``{}`` when the bundle has none."""
    layer = next((la for la in config.get("layers") or [] if la.get("role") == "profile"), None)
    if layer is None:
        return {}
    try:
        return {"declared_profile": _read_profile(read, layer, f"{repository} declared profile")}
    except ProfileError as err:
        log.warning("%s: declared profile unreadable (%s)", repository, err)
        return {"declared_profile_error": str(err)[:500]}


def _number(raw: object) -> float | None:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def _integer(raw: object) -> int | None:
    number = _number(raw)
    return int(number) if number is not None else None


def _coerce_figures(raw: dict[str, Any]) -> dict[str, float | int | None]:
    """The :data:`_FIGURES` and ``exit_status`` of ``raw`` (JSON data): numbers, ``None`` when
    absent or not a number; :data:`_INTEGER_FIGURES` as integers."""
    return {
        name: _integer(raw.get(name)) if name in _INTEGER_FIGURES else _number(raw.get(name))
        for name in (*_FIGURES, "exit_status")
    }


def _run_metrics(raw: object) -> dict[str, dict[str, float | int | None]]:
    found: dict[str, dict[str, float | int | None]] = {}
    for name, summary in (raw if isinstance(raw, dict) else {}).items():
        if not isinstance(summary, dict) or not re.fullmatch(_METRIC_NAME, str(name)):
            continue
        found[str(name)] = {
            **{stat: _number(summary.get(stat)) for stat in METRIC_STATS},
            "count": _integer(summary.get("count")),
        }
    return found


def sync_profile(session: Session, row: ManifestRow) -> set[str]:
    """Rewrite the run of one manifest from its ``details`` (a valid profile with a subject).

    Returns the subjects whose runs changed (the old one and the new one): the caller passes them,
    gathered over a batch, to :func:`refresh_summaries` once per repository, so that a batch of
    profiles of one platform re-aggregates it once. For any other manifest: one SELECT that finds
    no run, and no subject.
    """
    old = session.scalar(select(ProfileRun.subject_digest).where(ProfileRun.manifest_id == row.id))
    profile = row.details.get("profile") if row.kind == "profile" else None
    if old is None and not (isinstance(profile, dict) and row.subject_digest):
        return set()
    session.execute(delete(ProfileRun).where(ProfileRun.manifest_id == row.id))
    subjects = {old} if old else set()
    if isinstance(profile, dict) and row.subject_digest:
        # details hold what profile_details validated: the model reads it back
        device = profile.get("device") or {}
        session.add(
            ProfileRun(
                manifest_id=row.id,
                repository_id=row.repository_id,
                subject_digest=row.subject_digest,
                manifest_digest=row.digest,
                device=(label_of_device(device) or UNKNOWN_DEVICE)[:255],
                arch=str(device["arch"])[:64] if device.get("arch") else None,
                created=str(profile["created"])[:40] if profile.get("created") else None,
                **_coerce_figures(profile.get("measures") or {}),
                metrics=_run_metrics(profile.get("metrics")),
            )
        )
        subjects.add(row.subject_digest)
    session.flush()
    return subjects


def _median(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _newest_first(runs: Sequence[ProfileRun]) -> list[ProfileRun]:
    return sorted(runs, key=lambda r: (r.created or "", r.id), reverse=True)


def _run_figures(run: ProfileRun) -> dict[str, Any]:
    return {
        "manifest_digest": run.manifest_digest,
        "created": run.created,
        **{name: getattr(run, name) for name in _FIGURES},
        "exit_status": run.exit_status,
        "metrics": run.metrics,
    }


def aggregate(runs: Sequence[ProfileRun]) -> dict[str, Any]:
    """The summary of the runs of one device on one platform manifest (see the module docstring)."""
    newest = _newest_first(runs)
    figures: dict[str, Any] = {}
    for name in _FIGURES:
        median = _median([getattr(r, name) for r in runs])
        figures[name] = int(median) if median is not None and name in _INTEGER_FIGURES else median
    names = sorted({name for r in runs for name in r.metrics})
    metrics: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        per_run = [r.metrics[name] for r in runs if name in r.metrics]
        counts = [c for c in (m.get("count") for m in per_run) if c is not None]
        metrics[name] = {
            **{stat: _median([m.get(stat) for m in per_run]) for stat in METRIC_STATS},
            "count": int(sum(counts)) if counts else None,
        }
    return {
        "arch": next((r.arch for r in newest if r.arch), None),
        "runs": len(runs),
        "latest_created": newest[0].created,
        **figures,
        "exit_status": newest[0].exit_status,
        "metrics": metrics,
        "latest": _run_figures(newest[0]),
    }


def refresh_summaries(session: Session, repository_id: int, subjects: Iterable[str] | None = None) -> None:
    """Rebuild the summaries of ``subjects`` (every subject of the repository when ``None``: after
    reconcile removed manifests) from their runs."""
    wanted = None if subjects is None else sorted(set(subjects))
    if wanted == []:
        return
    stale = delete(ProfileSummary).where(ProfileSummary.repository_id == repository_id)
    runs_query = select(ProfileRun).where(ProfileRun.repository_id == repository_id)
    if wanted is not None:
        stale = stale.where(ProfileSummary.subject_digest.in_(wanted))
        runs_query = runs_query.where(ProfileRun.subject_digest.in_(wanted))
    session.execute(stale)
    groups: dict[tuple[str, str], list[ProfileRun]] = {}
    for run in session.scalars(runs_query):
        groups.setdefault((run.subject_digest, run.device), []).append(run)
    for (subject, device), runs in sorted(groups.items()):
        summary = ProfileSummary(
            repository_id=repository_id, subject_digest=subject, device=device, **aggregate(runs)
        )
        session.add(summary)
        session.flush()
        session.add_all(
            ProfileMetric(
                summary_id=summary.id,
                metric=name,
                p50=m["p50"],
                p95=m["p95"],
                p99=m["p99"],
                count=m["count"],
            )
            for name, m in summary.metrics.items()
        )
    session.flush()


# --- search ----------------------------------------------------------------------------------------


def _stat_column(metric: type[ProfileMetric], stat: Stat) -> InstrumentedAttribute[float | None]:
    column: InstrumentedAttribute[float | None] = getattr(metric, stat)
    return column


def _summary_conditions(filters: PerformanceFilters) -> list[ColumnElement[bool]]:
    """Conditions on one :class:`ProfileSummary` row: it passes every performance filter."""
    conditions: list[ColumnElement[bool]] = []
    if filters.device is not None:
        conditions.append(ProfileSummary.device == filters.device)
    if filters.max_rss is not None:
        conditions.append(ProfileSummary.peak_rss_bytes <= filters.max_rss)
    for bound in filters.bounds:
        # an alias each: the metric sort's own ProfileMetric must not correlate into these
        metric = aliased(ProfileMetric)
        column = _stat_column(metric, bound.stat)
        conditions.append(
            exists()
            .where(
                metric.summary_id == ProfileSummary.id,
                metric.metric == bound.metric,
                column < bound.value if bound.op == "<" else column <= bound.value,
            )
            .correlate(ProfileSummary)
        )
    return conditions


def _version_summaries() -> ColumnElement[bool]:
    """A summary belongs to a version when one of the version's platforms is its subject."""
    return and_(
        Platform.version_id == Version.id,
        ProfileSummary.repository_id == Version.repository_id,
        ProfileSummary.subject_digest == Platform.digest,
    )


def performance_clause(filters: PerformanceFilters) -> ColumnElement[bool]:
    """Versions with one (platform, device) summary that passes every filter in ``filters``."""
    return exists().where(_version_summaries(), *_summary_conditions(filters)).correlate(Version)


def metric_sort_rows(
    sort: MetricSort, filters: PerformanceFilters, clauses: Sequence[ColumnElement[bool]]
) -> Subquery:
    """``(id, key)`` of the versions passing ``clauses`` that have ``metric``: ``key`` is the best
    (lowest) ``stat`` over their summaries that pass ``filters``. Driven from the metric's rows
    (one pass over them, grouped by version), not one lookup per version of the catalogue."""
    column = _stat_column(ProfileMetric, sort.stat)
    return (
        select(Version.id.label("id"), func.min(column).label("key"))
        .select_from(ProfileMetric)
        .join(ProfileSummary, ProfileSummary.id == ProfileMetric.summary_id)
        .join(Platform, Platform.digest == ProfileSummary.subject_digest)
        .join(
            Version,
            and_(Version.id == Platform.version_id, Version.repository_id == ProfileSummary.repository_id),
        )
        .where(
            ProfileMetric.metric == sort.metric,
            column.is_not(None),
            *_summary_conditions(filters),
            *clauses,
        )
        .group_by(Version.id)
        .subquery("keyed")
    )


# --- rendering -------------------------------------------------------------------------------------


def _figures_of(raw: dict[str, Any]) -> ProfileFigures:
    return ProfileFigures.model_validate(
        {
            "created": raw.get("created"),
            "manifest_digest": raw.get("manifest_digest"),
            **_coerce_figures(raw),
            "metrics": {
                name: MetricFigures.model_validate(m) for name, m in _run_metrics(raw.get("metrics")).items()
            },
        }
    )


def _device_profile(summary: ProfileSummary) -> DeviceProfile:
    return DeviceProfile(
        device=summary.device,
        arch=summary.arch,
        platform_digest=summary.subject_digest,
        runs=summary.runs,
        median=_figures_of(
            {
                "created": summary.latest_created,
                **{name: getattr(summary, name) for name in _FIGURES},
                "exit_status": summary.exit_status,
                "metrics": summary.metrics,
            }
        ),
        latest=_figures_of(summary.latest if isinstance(summary.latest, dict) else {}),
    )


def device_profiles(session: Session, version_ids: Sequence[int]) -> dict[int, list[DeviceProfile]]:
    """The per-device summaries of many versions in one query, by version id (device order)."""
    found: dict[int, list[DeviceProfile]] = {}
    if not version_ids:
        return found
    rows = session.execute(
        select(Version.id, ProfileSummary)
        .join(Platform, Platform.version_id == Version.id)
        .join(
            ProfileSummary,
            and_(
                ProfileSummary.repository_id == Version.repository_id,
                ProfileSummary.subject_digest == Platform.digest,
            ),
        )
        .where(Version.id.in_(list(version_ids)))
        .order_by(Version.id, ProfileSummary.device, ProfileSummary.id)
    ).all()
    for version_id, summary in rows:
        found.setdefault(int(version_id), []).append(_device_profile(summary))
    return found
