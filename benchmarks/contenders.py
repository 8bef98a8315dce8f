"""The full-push contenders: ecr-oci and the peers it must keep up with (oras, crane, skopeo).

    >>> push = prepare_crane(find_tool("crane"), "127.0.0.1:5000", Path("/tmp/w"), 1 << 30)  # doctest: +SKIP
    >>> timed_push(push).mb_per_s                                                    # doctest: +SKIP
    120.3

Each ``prepare_*`` writes the contender's own random payload and returns the command (untimed);
:func:`timed_push` then runs it and measures only the client process. The peers push what a
plain "big file to a registry" tool pushes best:

- ``oras push --plain-http HOST/bench/oras:v model.bin`` — a file as an artifact layer (oras hashes
  the file first, then uploads it, like ecr-oci does);
- ``crane push LAYOUT HOST/bench/crane:v --insecure`` — an OCI image layout written here (digests
  already known, so crane does not need a hashing pass);
- ``skopeo copy --dest-tls-verify=false oci:LAYOUT:v docker://HOST/bench/skopeo:v`` — the same.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.measure import BenchError, Run, run_measured
from benchmarks.payload import write_random_file, write_random_layout

__all__ = [
    "PEERS",
    "Push",
    "PushFigure",
    "ecr_oci_command",
    "ecr_oci_push",
    "find_tool",
    "parse_push_json",
    "prepare_crane",
    "prepare_oras",
    "prepare_skopeo",
    "timed_push",
    "timed_run",
]

#: The repository root (``benchmarks/contenders.py`` → one level up); ``make install`` builds the
#: Go tools into ``.tools/bin`` there.
REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
#: The peers, in the order they run; the report picks the fastest after the run.
PEERS = ("oras", "crane", "skopeo")


@dataclass(frozen=True)
class Push:
    """One prepared push: what to run and how many payload bytes it uploads."""

    name: str
    argv: list[str]
    payload_bytes: int
    cwd: Path | None = None
    env: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PushFigure:
    """One measured push."""

    name: str
    wall_s: float
    payload_bytes: int
    peak_rss_mb: float
    output: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB/s (10^6 bytes), payload bytes over the client's wall time."""
        return self.payload_bytes / 1e6 / self.wall_s if self.wall_s > 0 else 0.0


def find_tool(name: str) -> str | None:
    """``.tools/bin/NAME`` (``make install``), else NAME on PATH, else ``None``."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def timed_run(push: Push) -> Run:
    """Run the prepared command once; flush dirty pages first so that the previous contender's
    registry writes are not written back on this one's clock."""
    os.sync()
    return run_measured(push.argv, cwd=push.cwd, env=push.env)


def timed_push(push: Push) -> PushFigure:
    """:func:`timed_run` as a figure with the prepared payload size."""
    run = timed_run(push)
    return PushFigure(push.name, run.wall_s, push.payload_bytes, run.peak_rss_mb)


# -- ecr-oci ---------------------------------------------------------------------------------------


def ecr_oci_command() -> list[str]:
    """The ``ecr-oci`` console script of this venv (what a user runs), or ``python -m ecr_oci``."""
    script = Path(sys.executable).with_name("ecr-oci")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "ecr_oci"]


def ecr_oci_push(bundle: Path, host: str, *, cache_home: Path, name: str = "ecr-oci") -> PushFigure:
    """``ecr-oci push BUNDLE --registry HOST --insecure --json`` with its layer cache in
    ``cache_home`` (fresh for the full push, warm for the re-push and the update).

    The payload is the ``bytesUploaded`` the push reports; the JSON is kept on the figure.
    """
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    argv = [*ecr_oci_command(), "push", str(bundle), "--registry", host, "--insecure", "--json"]
    run = timed_run(Push(name, argv, 0, env=env))
    output = parse_push_json(run.stdout)
    return PushFigure(name, run.wall_s, int(output["bytesUploaded"]), run.peak_rss_mb, output)


# -- peers -----------------------------------------------------------------------------------------


def prepare_oras(tool: str, host: str, work: Path, size: int) -> Push:
    """``oras push`` of a random ``model.bin``, run from its folder (oras refuses absolute paths
    without ``--disable-path-validation``). oras 1.x also uploads a 2-byte ``{}`` config."""
    folder = work / "oras"
    write_random_file(folder / "model.bin", size)
    argv = [tool, "push", "--plain-http", f"{host}/bench/oras:v", "model.bin"]
    return Push("oras", argv, size + 2, cwd=folder)


def prepare_crane(tool: str, host: str, work: Path, size: int) -> Push:
    """``crane push`` of an OCI image layout (crane reads a directory PATH as a layout)."""
    layout = work / "crane-layout"
    payload = write_random_layout(layout, size=size, tag="v")
    argv = [tool, "push", str(layout), f"{host}/bench/crane:v", "--insecure"]
    return Push("crane", argv, payload)


def prepare_skopeo(tool: str, host: str, work: Path, size: int) -> Push:
    """``skopeo copy`` from an OCI image layout to the registry (plain HTTP)."""
    layout = work / "skopeo-layout"
    payload = write_random_layout(layout, size=size, tag="v")
    argv = [
        tool,
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout}:v",
        f"docker://{host}/bench/skopeo:v",
    ]
    return Push("skopeo", argv, payload)


def parse_push_json(stdout: str) -> dict[str, Any]:
    """The object ``ecr-oci push --json`` printed; raises :class:`BenchError` if there is none."""
    try:
        value = json.loads(stdout)
    except ValueError as err:
        raise BenchError(f"ecr-oci push --json printed no JSON object: {stdout[-500:]!r}") from err
    if not isinstance(value, dict) or "bytesUploaded" not in value:
        raise BenchError(f"unexpected ecr-oci push --json output: {stdout[-500:]!r}")
    return value
