"""The machine and tool versions a run happened on, recorded next to its figures.

    >>> describe_machine({"oras": "/work/main/.tools/bin/oras"})["cpus"]   # doctest: +SKIP
    '2'

Figures without the machine are meaningless: the registry is CPU-bound on loopback (REFERENCE.md,
~8 s of registry CPU per GiB), so core count and CPU model decide the absolute MB/s, and a client
version change can move a peer's number.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

__all__ = ["describe_machine"]

#: How to ask each program for its version (the first output line is kept).
_VERSION_ARGS: dict[str, tuple[str, ...]] = {
    "docker-registry": ("--version",),
    "oras": ("version",),
    "crane": ("version",),
    "skopeo": ("--version",),
    "podman": ("--version",),
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.partition('=')[2].strip(chr(34))}, kernel {platform.release()}"
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"


def _program_version(path: str, args: tuple[str, ...]) -> str:
    try:
        result = subprocess.run([path, *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unavailable ({err})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return " ".join(lines[0].split()) if lines else "unknown"


def _package(name: str) -> str:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return "not installed"


def describe_machine(programs: Mapping[str, str]) -> dict[str, str]:
    """CPU count, CPU model, RAM, OS, date and versions; ``programs`` maps a name in
    :data:`_VERSION_ARGS` to the path that was benchmarked."""
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu model": _cpu_model(),
        "RAM": _ram_gib(),
        "OS": _os_name(),
        "Python": platform.python_version(),
        "ecr-oci": _package("ecr-oci"),
        "httpx": _package("httpx"),
    }
    for name, path in programs.items():
        info[name] = _program_version(path, _VERSION_ARGS.get(name, ("--version",)))
    return info
