"""The full-push contenders: ecr-oci and the peers it must keep up with (oras, crane, skopeo).

    >>> prepare = peer_preparer("crane", find_tool("crane"))                   # doctest: +SKIP
    >>> push = prepare("127.0.0.1:5000", Path("/tmp/w"), 1 << 30, 0)           # doctest: +SKIP
    >>> timed_push(push).mb_per_s                                             # doctest: +SKIP
    210.3

A :data:`Prepare` writes the contender's own random payload for one round and returns the command;
it is not timed. :func:`timed_push` runs the command and measures only the client process. The
peers push what a plain "big file to a registry" tool pushes best:

- ``oras push --plain-http HOST/bench/oras:rN model.bin`` — a file as an artifact layer (oras
  hashes the file first, then uploads it, as ecr-oci does on a cold cache);
- ``crane push LAYOUT HOST/bench/crane:rN --insecure`` — an OCI image layout written here (the
  digests are already in the layout, so crane has no hashing pass to do);
- ``skopeo copy --dest-tls-verify=false oci:LAYOUT:v docker://HOST/bench/skopeo:rN`` — the same.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.measure import BenchError, drop_file_cache, process_cpu_s, run_measured
from benchmarks.payload import write_bundle, write_random_file, write_random_layout
from ecr_oci.devenv import LocalRegistry

__all__ = [
    "ECR",
    "PEERS",
    "Prepare",
    "Push",
    "PushFigure",
    "PushSeries",
    "bundle_version",
    "ecr_oci_command",
    "ecr_oci_preparer",
    "ecr_oci_push",
    "find_tool",
    "parse_push_json",
    "peer_preparer",
    "timed_push",
]

#: The repository root (``benchmarks/contenders.py`` → one level up); ``make install`` builds the
#: Go tools into ``.tools/bin`` there.
REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
ECR = "ecr-oci"
#: The peers, in the order they run in a round; the report picks the fastest after the run.
PEERS = ("oras", "crane", "skopeo")


@dataclass(frozen=True)
class Push:
    """One prepared push: what to run, how many payload bytes it uploads, what to delete after.

    ``json_output`` marks ecr-oci: its payload is the ``bytesUploaded`` it prints, and the printed
    object is kept on the figure (the update step needs the code layer's size).
    """

    name: str
    argv: list[str]
    payload_bytes: int = 0
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    json_output: bool = False
    scratch: Path | None = None


@dataclass(frozen=True)
class PushFigure:
    """One measured push."""

    name: str
    wall_s: float
    payload_bytes: int
    peak_rss_mb: float
    cpu_s: float = 0.0
    registry_cpu_s: float = 0.0
    output: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB/s (10^6 bytes), payload bytes over the client's wall time."""
        return self.payload_bytes / 1e6 / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class PushSeries:
    """The same contender measured once per round. Single runs on a 2-core VM vary by +-20 %
    (page cache, writeback, the registry competing for the same cores), so the report uses the
    median and shows the spread."""

    name: str
    runs: list[PushFigure]

    @property
    def median(self) -> PushFigure:
        """The run with the median wall time (the lower middle one for an even count)."""
        ordered = sorted(self.runs, key=lambda run: run.wall_s)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def wall_s(self) -> float:
        return statistics.median(run.wall_s for run in self.runs)

    @property
    def payload_bytes(self) -> int:
        return self.median.payload_bytes

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes / 1e6 / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def peak_rss_mb(self) -> float:
        """The largest peak RSS of any run (the target is a ceiling)."""
        return max(run.peak_rss_mb for run in self.runs)

    @property
    def walls(self) -> list[float]:
        return [run.wall_s for run in self.runs]

    @property
    def cpu_s(self) -> float:
        """Median client CPU seconds."""
        return statistics.median(run.cpu_s for run in self.runs)

    @property
    def registry_cpu_s(self) -> float:
        """Median registry CPU seconds spent while this contender pushed."""
        return statistics.median(run.registry_cpu_s for run in self.runs)


#: ``prepare(host, work, size, round) -> Push``: write a fresh payload under ``work`` (untimed).
Prepare = Callable[[str, Path, int, int], Push]


def find_tool(name: str) -> str | None:
    """``.tools/bin/NAME`` (``make install``), else NAME on PATH, else ``None``."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def timed_push(push: Push, *, registry: LocalRegistry | None = None) -> PushFigure:
    """Run the prepared command once and delete its scratch payload afterwards.

    With ``registry``, its store is evicted from the page cache first (see
    :func:`~benchmarks.measure.drop_file_cache`) and its CPU seconds during the push are recorded.
    Dirty pages are always flushed first, so the previous push's writes are not written back on
    this one's clock.
    """
    if registry is not None:
        drop_file_cache(registry.storage_dir)
    else:
        os.sync()
    pid = registry.pid if registry is not None else None
    registry_before = process_cpu_s(pid) if pid else 0.0
    run = run_measured(push.argv, cwd=push.cwd, env=push.env)
    registry_cpu = process_cpu_s(pid) - registry_before if pid else 0.0
    if push.scratch is not None:
        shutil.rmtree(push.scratch)
    output = parse_push_json(run.stdout) if push.json_output else {}
    payload = int(output["bytesUploaded"]) if push.json_output else push.payload_bytes
    return PushFigure(push.name, run.wall_s, payload, run.peak_rss_mb, run.cpu_s, registry_cpu, output)


def parse_push_json(stdout: str) -> dict[str, Any]:
    """The object ``ecr-oci push --json`` printed; raises :class:`BenchError` if there is none."""
    try:
        value = json.loads(stdout)
    except ValueError as err:
        raise BenchError(f"ecr-oci push --json printed no JSON object: {stdout[-500:]!r}") from err
    if not isinstance(value, dict) or "bytesUploaded" not in value:
        raise BenchError(f"unexpected ecr-oci push --json output: {stdout[-500:]!r}")
    return value


# -- ecr-oci ---------------------------------------------------------------------------------------


def ecr_oci_command() -> list[str]:
    """The ``ecr-oci`` console script of this venv (what a user runs), or ``python -m ecr_oci``."""
    script = Path(sys.executable).with_name("ecr-oci")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "ecr_oci"]


def ecr_oci_push(bundle: Path, host: str, *, cache_home: Path, name: str = ECR) -> Push:
    """``ecr-oci push BUNDLE --registry HOST --insecure --json`` with its layer cache (the
    ``XDG_CACHE_HOME`` the CLI reads) in ``cache_home``: fresh for a full push, warm after."""
    argv = [*ecr_oci_command(), "push", str(bundle), "--registry", host, "--insecure", "--json"]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    return Push(name, argv, env=env, json_output=True)


def bundle_version(round_: int, *, update: bool = False) -> str:
    """Round N's bundle is version ``1.N.0``; its code-only update (``update=True``) ``1.N.1``."""
    return f"1.{round_}.{int(update)}"


def ecr_oci_preparer(base: str) -> Prepare:
    """Round N: a bench bundle ``bundle-rN`` (version :func:`bundle_version`) with a fresh random
    model and an empty layer cache ``cache-rN``. The last round's bundle is kept for the no-op and
    update steps; an earlier one is deleted when the next is written (disk: one model, not N)."""

    def prepare(host: str, work: Path, size: int, round_: int) -> Push:
        shutil.rmtree(work / f"bundle-r{round_ - 1}", ignore_errors=True)
        bundle = work / f"bundle-r{round_}"
        write_bundle(bundle, base=base, version=bundle_version(round_), model_size=size, seed=round_)
        return ecr_oci_push(bundle, host, cache_home=work / f"cache-r{round_}")

    return prepare


# -- peers -----------------------------------------------------------------------------------------


def _oras(tool: str, host: str, work: Path, size: int, round_: int) -> Push:
    """``oras push`` of a random ``model.bin``, run from its folder (oras refuses absolute paths
    without ``--disable-path-validation``). oras 1.x also uploads a 2-byte ``{}`` config."""
    folder = work / f"oras-r{round_}"
    write_random_file(folder / "model.bin", size)
    argv = [tool, "push", "--plain-http", f"{host}/bench/oras:r{round_}", "model.bin"]
    return Push("oras", argv, size + 2, cwd=folder, scratch=folder)


def _crane(tool: str, host: str, work: Path, size: int, round_: int) -> Push:
    """``crane push`` of an OCI image layout (crane reads a directory PATH as a layout)."""
    layout = work / f"crane-r{round_}"
    payload = write_random_layout(layout, size=size, tag="v")
    argv = [tool, "push", str(layout), f"{host}/bench/crane:r{round_}", "--insecure"]
    return Push("crane", argv, payload, scratch=layout)


def _skopeo(tool: str, host: str, work: Path, size: int, round_: int) -> Push:
    """``skopeo copy`` from an OCI image layout to the registry (plain HTTP)."""
    layout = work / f"skopeo-r{round_}"
    payload = write_random_layout(layout, size=size, tag="v")
    destination = f"docker://{host}/bench/skopeo:r{round_}"
    argv = [tool, "copy", "--dest-tls-verify=false", f"oci:{layout}:v", destination]
    return Push("skopeo", argv, payload, scratch=layout)


_PEERS: dict[str, Callable[[str, str, Path, int, int], Push]] = {
    "oras": _oras,
    "crane": _crane,
    "skopeo": _skopeo,
}


def peer_preparer(name: str, tool: str) -> Prepare:
    """The :data:`Prepare` of peer ``name`` (one of :data:`PEERS`) using the program at ``tool``."""
    build = _PEERS[name]

    def prepare(host: str, work: Path, size: int, round_: int) -> Push:
        return build(tool, host, work, size, round_)

    return prepare
