"""Sampling a running process tree from ``/proc``: CPU time, CPU %, peak resident memory.

    >>> import os
    >>> sampler = TreeSampler(os.getpid(), interval=0.05)
    >>> sampler.sample_once()
    True
    >>> sampler.result().peak_rss_bytes > 0
    True

Why ``/proc`` and not the container's cgroup: the same code then measures a local process and a
podman container (whose processes the host sees in its ``/proc``), and it works on cgroup v1 hosts,
where ``memory.max_usage_in_bytes`` also counts page cache and so overstates what a plugin holds.

What is measured, and how well:

- **CPU time** is the sum, over the live processes of the tree, of their own and their reaped
  children's user+system time (``/proc/PID/stat`` utime, stime, cutime, cstime): a child that exits
  moves its time into its parent's ``cutime``, so nothing is counted twice. The tail after the last
  sample is missed (at most one interval); the process runtime replaces this figure with the exact
  ``wait4`` rusage of the root.
- **CPU %** is the rate between consecutive samples (100 = one core busy); its p50/p95 are reported.
- **Peak RSS** is the larger of the highest sampled sum of the tree's resident memory and the highest
  ``VmHWM`` (the kernel's own peak, exact for one process) of any process in the tree.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: 10 Hz: fine enough for a 1-s workload, light enough (a few hundred small reads) for a Raspberry Pi.
DEFAULT_INTERVAL = 0.1


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the profiler uses."""

    pid: int
    ppid: int
    state: str
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_bytes: int


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """``/proc/PID/stat`` parsed; ``None`` when the process is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name is in parentheses and may itself hold spaces and ')': split at the last one
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in rest[11:15])
    return ProcStat(
        pid=pid,
        ppid=int(rest[1]),
        state=rest[0],
        cpu_ticks=utime + stime + cutime + cstime,
        rss_bytes=int(rest[21]) * PAGE_SIZE,
    )


def read_peak_rss(pid: int, proc: Path = PROC) -> int | None:
    """``VmHWM`` of ``/proc/PID/status`` in bytes (the process's peak RSS); ``None`` if unknown."""
    try:
        with (proc / str(pid) / "status").open() as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def process_tree(root: int, proc: Path = PROC) -> list[ProcStat]:
    """The live processes of the tree under ``root`` (itself first); empty when ``root`` is gone."""
    stats: dict[int, ProcStat] = {}
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name), proc)
            if stat is not None:
                stats[stat.pid] = stat
    if root not in stats:
        return []
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(stats[pid])
        queue.extend(children.get(pid, ()))
    return tree


@dataclass
class TreeMeasures:
    """What a :class:`TreeSampler` saw."""

    samples: int = 0
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    cpu_percent: list[float] = field(default_factory=list)


class TreeSampler:
    """Samples the tree under ``root`` every ``interval`` seconds in a background thread.

    ``start()`` then ``stop()`` (or a ``with`` block); :meth:`result` any time. :meth:`sample_once`
    takes one sample in the caller's thread (the last one before the root is reaped, for example).
    """

    def __init__(self, root: int, *, interval: float = DEFAULT_INTERVAL, proc: Path = PROC) -> None:
        self.root = root
        self.interval = interval
        self._proc = proc
        self._measures = TreeMeasures()
        self._last: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> bool:
        """Take one sample; ``False`` when the tree is gone (or only a zombie root is left)."""
        tree = process_tree(self.root, self._proc)
        if not tree:
            return False
        now = time.monotonic()
        ticks = sum(stat.cpu_ticks for stat in tree)
        rss = sum(stat.rss_bytes for stat in tree)
        hwm = max((read_peak_rss(stat.pid, self._proc) or 0 for stat in tree), default=0)
        with self._lock:
            measures = self._measures
            measures.samples += 1
            measures.peak_rss_bytes = max(measures.peak_rss_bytes or 0, rss, hwm)
            measures.cpu_s = max(measures.cpu_s or 0.0, ticks / CLOCK_TICKS)
            if self._last is not None and now > self._last[0]:
                rate = (ticks - self._last[1]) / CLOCK_TICKS / (now - self._last[0]) * 100
                measures.cpu_percent.append(max(rate, 0.0))
            self._last = (now, ticks)
        return tree[0].state != "Z"

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if not self.sample_once():
                    return
            self._stopping.wait(self.interval)

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name=f"profile-sampler-{self.root}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> TreeMeasures:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        return self.result()

    def result(self) -> TreeMeasures:
        with self._lock:
            measures = self._measures
            return TreeMeasures(
                samples=measures.samples,
                cpu_s=measures.cpu_s,
                peak_rss_bytes=measures.peak_rss_bytes,
                cpu_percent=list(measures.cpu_percent),
            )

    def __enter__(self) -> TreeSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
