"""What the profiled device is: architecture, CPU, memory, an NVIDIA GPU, energy counters.

    >>> device = describe_device(name="bench-1")
    >>> device.name, device.arch in ("linux/amd64", "linux/arm64", "linux/arm/v7", None)
    ('bench-1', True)

Only what the machine reports is filled in; the rest stays absent (never zero). The hostname is not
recorded: profiles are published, and a device is named by the operator (``--device-name``).

- **CPU**: ``/proc/cpuinfo`` (``model name`` on x86; ``Hardware``/``Model`` on ARM boards) and the
  device-tree model (``/proc/device-tree/model``: "NVIDIA Jetson Xavier NX Developer Kit",
  "Raspberry Pi 4 Model B") as the device model.
- **NVIDIA GPU**: through the ``nvidia-smi`` command when it is on ``PATH`` (NVML's own CLI; no Python
  binding is needed). Utilisation and memory are device-wide: a profile is meant for a quiet device.
- **Energy**: Intel/AMD RAPL package counters in ``/sys/class/powercap`` (``intel-rapl:N``); read at
  the start and end of a run, wrap-around handled.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from ecr_oci.profile.model import Device

POWERCAP = Path("/sys/class/powercap")
_MACHINE_TO_OCI = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm/v7",
    "armv6l": "arm/v6",
    "i686": "386",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
_NVIDIA_SMI_TIMEOUT = 10.0


def oci_platform(machine: str | None = None) -> str | None:
    """``x86_64`` → ``linux/amd64``, ``aarch64`` → ``linux/arm64``; ``None`` when unknown."""
    arch = _MACHINE_TO_OCI.get(machine or platform.machine())
    return f"linux/{arch}" if arch else None


def _cpuinfo() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            found.setdefault(key.strip(), value.strip())
    return found


def _board_model() -> str | None:
    try:
        text = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace")
    except OSError:
        return None
    return text.strip() or None


def _memory_bytes() -> int | None:
    try:
        with Path("/proc/meminfo").open() as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def nvidia_smi(*fields: str, query: str = "--query-gpu") -> list[list[str]] | None:
    """Rows of ``nvidia-smi QUERY=FIELDS --format=csv,noheader,nounits``; ``None`` without a GPU."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, f"{query}={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    rows = [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]
    return rows or None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def describe_device(*, name: str | None = None) -> Device:
    """This machine as a profile ``device``; ``name`` is the operator's name for it."""
    info = _cpuinfo()
    cpu = info.get("model name") or info.get("Hardware") or info.get("Processor") or info.get("cpu model")
    accelerator = accelerator_memory = None
    gpus = nvidia_smi("name", "memory.total")
    if gpus:
        accelerator = gpus[0][0] + (f" (x{len(gpus)})" if len(gpus) > 1 else "")
        mib = _number(gpus[0][1]) if len(gpus[0]) > 1 else None
        accelerator_memory = int(mib * 1024 * 1024) if mib is not None else None
    return Device(
        name=name,
        model=_board_model() or info.get("Model"),
        arch=oci_platform(),
        cpu=cpu,
        cpu_cores=os.cpu_count(),
        memory=_memory_bytes(),
        accelerator=accelerator,
        accelerator_memory_bytes=accelerator_memory,
    )


def software_versions(runtime: str) -> dict[str, str]:
    """``runtime`` (e.g. ``podman 4.3.1``), the kernel and ecr-oci's version."""
    try:
        ours = package_version("ecr-oci")
    except PackageNotFoundError:
        ours = "unknown"
    return {"runtime": runtime, "kernel": platform.release(), "ecr-oci": ours}


# --- GPU sampling ---------------------------------------------------------------------------------


@dataclass
class GpuPeaks:
    util_percent: float | None = None
    memory_bytes: int | None = None


class GpuSampler:
    """Polls ``nvidia-smi`` (device-wide utilisation and memory used) in a thread; peaks only.

    Does nothing on a machine without ``nvidia-smi``, so the GPU fields stay absent there.
    """

    def __init__(self, *, interval: float = 1.0) -> None:
        self.interval = interval
        self.peaks = GpuPeaks()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rows = nvidia_smi("utilization.gpu", "memory.used")
        for row in rows or []:
            util = _number(row[0])
            used = _number(row[1]) if len(row) > 1 else None
            if util is not None:
                self.peaks.util_percent = max(self.peaks.util_percent or 0.0, util)
            if used is not None:
                self.peaks.memory_bytes = max(self.peaks.memory_bytes or 0, int(used * 1024 * 1024))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._sample()
            self._stopping.wait(self.interval)

    def start(self) -> GpuSampler:
        if shutil.which("nvidia-smi") is not None:
            self._thread = threading.Thread(target=self._loop, name="profile-gpu", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> GpuPeaks:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        return self.peaks


# --- energy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Counter:
    path: Path
    max_uj: int


class EnergyMeter:
    """RAPL package energy over an interval: :meth:`start`, then :meth:`joules` (``None`` if none)."""

    def __init__(self, powercap: Path = POWERCAP) -> None:
        self._counters: list[_Counter] = []
        self._start: list[int] = []
        # top-level zones only (intel-rapl:0, intel-rapl:1): their sub-zones are parts of them
        for zone in sorted(powercap.glob("intel-rapl:*")):
            if zone.name.count(":") != 1:
                continue
            try:
                max_uj = int((zone / "max_energy_range_uj").read_text())
                int((zone / "energy_uj").read_text())
            except (OSError, ValueError):
                continue  # unreadable (energy_uj is root-only on recent kernels)
            self._counters.append(_Counter(zone / "energy_uj", max_uj))

    def start(self) -> EnergyMeter:
        self._start = [int(c.path.read_text()) for c in self._counters]
        return self

    def joules(self) -> float | None:
        if not self._counters or not self._start:
            return None
        total = 0
        for counter, begin in zip(self._counters, self._start, strict=True):
            try:
                end = int(counter.path.read_text())
            except (OSError, ValueError):
                return None
            total += end - begin if end >= begin else end + counter.max_uj - begin
        return total / 1e6
