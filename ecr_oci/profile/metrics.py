"""Plugin metrics: JSON lines a plugin prints (or writes to a file), summarised as percentiles.

    >>> samples = MetricSamples()
    >>> for line in ['{"metric": "inference_ms", "value": 12.5}', "plain log line",
    ...              '{"metric": "inference_ms", "value": 20}']:
    ...     samples.feed_line(line)
    >>> samples.summaries()["inference_ms"].p50, samples.summaries()["inference_ms"].count
    (12.5, 2)

A metric line is a JSON object with a string ``metric`` and a finite number ``value`` (an optional
string ``unit`` is kept); every other line is the plugin's own output and is ignored, so a plugin can
mix logs and metrics on stdout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from ecr_oci.profile.model import MetricSummary

#: Lines longer than this are not metric lines (and are not parsed).
MAX_LINE = 4096


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values at or
    below it. Always one of the values (no interpolation), so p95 of a plugin's latencies is a latency
    it really had. Raises ``ValueError`` for no values or a fraction outside (0, 1].

        >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95)
        10
        >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5)
        5
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    ordered = sorted(values)
    rank = math.ceil(fraction * len(ordered))
    return ordered[max(rank, 1) - 1]


def parse_metric_line(line: str) -> tuple[str, float, str | None] | None:
    """``(name, value, unit)`` of a metric line; ``None`` for any other line."""
    text = line.strip()
    if not text.startswith("{") or len(text) > MAX_LINE:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    name, value, unit = document.get("metric"), document.get("value"), document.get("unit")
    if not isinstance(name, str) or not name or isinstance(value, bool):
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return name, float(value), unit if isinstance(unit, str) else None


class MetricSamples:
    """Values by metric name, fed line by line while the plugin runs."""

    def __init__(self) -> None:
        self._values: dict[str, list[float]] = {}
        self._units: dict[str, str] = {}

    def feed_line(self, line: str) -> None:
        parsed = parse_metric_line(line)
        if parsed is None:
            return
        name, value, unit = parsed
        self._values.setdefault(name, []).append(value)
        if unit is not None:
            self._units[name] = unit

    def feed_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed_line(line)

    def feed_file(self, path: Path) -> None:
        """Read a metrics file the plugin wrote (absent: nothing to add)."""
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                self.feed_lines(handle)
        except FileNotFoundError:
            return

    def values(self, name: str) -> list[float]:
        return list(self._values.get(name, ()))

    def summaries(self) -> dict[str, MetricSummary]:
        """p50/p95/p99/count per metric (unit where the plugin gave one), by name."""
        return {
            name: summarize(values, unit=self._units.get(name))
            for name, values in sorted(self._values.items())
        }


def summarize(values: Sequence[float], *, unit: str | None = None) -> MetricSummary:
    """The summary of one metric's values (at least one)."""
    return MetricSummary(
        p50=percentile(values, 0.50),
        p95=percentile(values, 0.95),
        p99=percentile(values, 0.99),
        count=len(values),
        unit=unit,
    )
