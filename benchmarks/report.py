"""Figures → targets (PASS/MISS) → a console table and the marked section of docs/benchmarks.md.

    >>> results, machine = run_benchmark(Path("/tmp/w"), 1 << 30, 5)                  # doctest: +SKIP
    >>> print(console_table(results))                                                # doctest: +SKIP
    >>> section = markdown_section(results, machine, command="python -m benchmarks")  # doctest: +SKIP
    >>> write_section(Path("docs/benchmarks.md"), section)                           # doctest: +SKIP

The targets are issue 2's: push throughput >= 1.0x the fastest peer, ecr-oci client RSS <= 100 MB,
a no-op re-push <= 0.05x the full push, and a code-only update served in <= 1.05x the code layer.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.contenders import ECR, PushFigure, PushSeries

__all__ = [
    "END",
    "START",
    "Results",
    "Target",
    "UpdateFigure",
    "console_table",
    "evaluate",
    "markdown_section",
    "say",
    "verdict",
    "write_section",
]

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


@dataclass(frozen=True)
class UpdateFigure:
    """The code-only update: push v2 after v1, then what podman pulls for v1 and v2."""

    push: PushFigure
    code_layer_size: int
    pull_v1_wall_s: float
    pull_v1_served: int
    pull_v2_wall_s: float
    pull_v2_served: int

    @property
    def served_ratio(self) -> float:
        """Bytes served for the v2 pull over the new code layer's size (1.0 = only the layer)."""
        return self.pull_v2_served / self.code_layer_size


@dataclass(frozen=True)
class Results:
    """Everything one run measured. ``pushes`` holds ecr-oci's full pushes and each peer's."""

    size: int
    repeat: int
    pushes: list[PushSeries]
    missing: list[str]
    noop: PushSeries
    update: UpdateFigure
    #: What :func:`~benchmarks.measure.rss_floor_mb` reported: no RSS figure can be below it.
    rss_floor_mb: float

    @property
    def ecr(self) -> PushSeries:
        return next(p for p in self.pushes if p.name == ECR)

    @property
    def fastest_peer(self) -> PushSeries | None:
        peers = [p for p in self.pushes if p.name != ECR]
        return max(peers, key=lambda p: p.mb_per_s) if peers else None

    @property
    def noop_ratio(self) -> float:
        return self.noop.wall_s / self.ecr.wall_s


@dataclass(frozen=True)
class Target:
    """One of issue 2's targets with the measured value; ``None`` when it could not be measured."""

    what: str
    value: float | None
    limit: float
    at_least: bool
    unit: str = "x"

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        compare: Callable[[float, float], bool] = operator.ge if self.at_least else operator.le
        return compare(self.value, self.limit)

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "MISS (not measured)"
        return "PASS" if self.passed else "MISS"

    def text(self) -> tuple[str, str, str]:
        """(what, measured, target) as printed."""
        sign = ">=" if self.at_least else "<="
        digits = 1 if self.unit == "MB" else 3
        measured = "n/a" if self.value is None else f"{self.value:.{digits}f} {self.unit}"
        return self.what, measured, f"{sign} {self.limit:g} {self.unit}".strip()


def evaluate(results: Results) -> list[Target]:
    """The four targets, measured."""
    peer = results.fastest_peer
    ratio = results.ecr.mb_per_s / peer.mb_per_s if peer is not None else None
    peer_name = peer.name if peer is not None else "none available"
    return [
        Target(f"push throughput vs fastest peer ({peer_name})", ratio, 1.0, at_least=True),
        Target("ecr-oci peak RSS (full push)", results.ecr.peak_rss_mb, 100.0, at_least=False, unit="MB"),
        Target("no-op re-push wall / full push wall", results.noop_ratio, 0.05, at_least=False),
        Target(
            "code-only update: served to podman / code layer",
            results.update.served_ratio,
            1.05,
            at_least=False,
        ),
    ]


def say(message: str, *, prefix: str = "") -> None:
    """Progress on stderr, so that stdout holds only the table; ``prefix`` names the benchmark."""
    print(f"{prefix}{message}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    """The verdict cell of the service, token and admission tables (``ok`` or ``MISS``)."""
    return "ok" if ok else "MISS"


# -- rows shared by the console and markdown tables --------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


Row = tuple[str, ...]

_HEADER: Row = (
    "step",
    "contender",
    "wall s",
    "MB/s",
    "peak RSS MB",
    "CPU s",
    "registry CPU s",
    "ratio / notes",
)


def _walls(series: PushSeries) -> str:
    return "/".join(f"{wall:.2f}" for wall in series.walls)


def _measured(figure: PushFigure | PushSeries, rate: bool) -> Row:
    """wall s, MB/s, peak RSS MB, CPU s, registry CPU s."""
    return (
        f"{figure.wall_s:.2f}",
        f"{figure.mb_per_s:.1f}" if rate else "-",
        f"{figure.peak_rss_mb:.0f}",
        f"{figure.cpu_s:.2f}",
        f"{figure.registry_cpu_s:.2f}",
    )


def _push_rows(results: Results) -> list[Row]:
    peer = results.fastest_peer
    rows = []
    for push in results.pushes:
        ratio = f"{push.mb_per_s / peer.mb_per_s:.3f}x fastest peer" if peer else "no peer"
        note = f"{ratio}; {_mb(push.payload_bytes)} MB sent; runs {_walls(push)} s"
        rows.append(("full push", push.name, *_measured(push, rate=True), note))
    return rows


def _rows(results: Results) -> list[Row]:
    """One :data:`_HEADER` row per measured step (the podman pulls have no client figures)."""
    noop, update = results.noop, results.update
    code = update.code_layer_size
    return [
        *_push_rows(results),
        ("no-op re-push", ECR, *_measured(noop, rate=False),
         f"{results.noop_ratio:.3f}x full push; {noop.payload_bytes} B sent; runs {_walls(noop)} s"),
        ("code update: push v2", ECR, *_measured(update.push, rate=False),
         f"bytesUploaded {update.push.payload_bytes:,} B (code layer {code:,} B)"),
        ("code update: pull v1", "podman", f"{update.pull_v1_wall_s:.2f}", "-", "-", "-", "-",
         f"registry served {_mb(update.pull_v1_served)} MB"),
        ("code update: pull v2", "podman", f"{update.pull_v2_wall_s:.2f}", "-", "-", "-", "-",
         f"registry served {update.pull_v2_served:,} B = {update.served_ratio:.3f}x code layer"),
    ]  # fmt: skip


# -- console ----------------------------------------------------------------------------------------


def console_table(results: Results) -> str:
    """The figures as an aligned text table, then one PASS/MISS line per target."""
    rows = [_HEADER, *_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    for target in evaluate(results):
        what, measured, limit = target.text()
        lines.append(f"{target.verdict:<5} {what}: {measured} (target {limit})")
    for name in results.missing:
        lines.append(f"NOTE  peer {name} was not available and was not measured")
    lines.append(f"NOTE  {_floor_note(results)}")
    return "\n".join(lines)


# -- markdown -------------------------------------------------------------------------------------


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown_section(results: Results, machine: Mapping[str, str], *, command: str) -> str:
    """The generated part of docs/benchmarks.md: figures, targets, machine."""
    lines = [
        f"Last run: {machine.get('date', '?')}, `{command}`: model {results.size / (1 << 20):g} MiB, "
        f"{results.repeat} round(s) of full pushes, medians shown.",
        "",
        *_md_table(_HEADER, _rows(results)),
        "",
        *_md_table(
            ("target", "measured", "goal", "verdict"),
            [(*t.text(), f"**{t.verdict}**") for t in evaluate(results)],
        ),
    ]
    if results.missing:
        lines += ["", f"Peers not available in this run: {', '.join(results.missing)}."]
    lines += ["", _floor_note(results)]
    lines += [
        "",
        *_md_table(("machine", ""), [(k, f"`{v}`" if k not in ("date",) else v) for k, v in machine.items()]),
    ]
    return "\n".join(lines)


def _floor_note(results: Results) -> str:
    return (
        f"Peak RSS is the client's own ru_maxrss; no figure can be below {results.rss_floor_mb:.0f} MB, "
        "the footprint of the launcher that measures it (`true` run the same way)."
    )


def write_section(path: Path, body: str, *, start_marker: str = START, end_marker: str = END) -> None:
    """Replace what lies between the markers in ``path``, keeping the prose around it; append a
    marked section when the file or its markers are missing. Each benchmark has its own markers."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start_marker}\n{body}\n{end_marker}"
    start, end = text.find(start_marker), text.find(end_marker)
    if start != -1 and end > start:
        text = text[:start] + block + text[end + len(end_marker) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
