"""Run one client program and measure its wall time and its own peak RSS.

    >>> run = run_measured(["true"])                  # doctest: +SKIP
    >>> run.wall_s, run.peak_rss_mb                   # doctest: +SKIP
    (0.001, 1.2)

Why ``os.wait4`` on the child's PID: ``getrusage(RUSAGE_CHILDREN)`` reports the largest RSS of
*any* reaped child so far, so after the first contender every later figure would be polluted by
the biggest earlier one. ``wait4`` returns the rusage of exactly the process it reaps. Its
``ru_maxrss`` is in KiB on Linux. The child's own children (none for these clients) are not
counted.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchError", "Run", "run_measured"]


class BenchError(Exception):
    """A step of the benchmark failed; the message says which program and shows its stderr."""


@dataclass(frozen=True, slots=True)
class Run:
    """One finished client process."""

    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    peak_rss_kib: int
    stdout: str
    stderr: str

    @property
    def peak_rss_mb(self) -> float:
        """Peak resident set size in MB (10^6 bytes), the unit the targets use."""
        return self.peak_rss_kib * 1024 / 1e6


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800.0,
) -> Run:
    """Run ``argv`` to completion; raise :class:`BenchError` if it fails or outlives ``timeout``.

    stdout/stderr go to temp files rather than pipes, so a chatty client can never block on a full
    pipe while we sit in ``wait4`` (and reading pipes would add our own work to the timed span).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        rusage = _wait4_with_timeout(proc, timeout)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        run = Run(
            argv=tuple(argv),
            returncode=proc.returncode if proc.returncode is not None else -1,
            wall_s=wall,
            peak_rss_kib=rusage.ru_maxrss,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )
    if run.returncode != 0:
        detail = (run.stderr.strip() or run.stdout.strip())[-2000:]
        raise BenchError(f"`{' '.join(argv)}` exited with status {run.returncode}: {detail}")
    return run


def _wait4_with_timeout(proc: subprocess.Popen[bytes], timeout: float) -> resource.struct_rusage:
    """Reap ``proc`` with ``wait4`` (killing it after ``timeout`` s) and record its exit code.

    Popen must learn the exit code from us: the child is already reaped, and a later
    ``proc.wait()`` would find no child and wrongly report success.
    """
    killer = threading.Timer(timeout, _kill, args=(proc.pid,))
    killer.start()
    try:
        _pid, status, rusage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return rusage


def _kill(pid: int) -> None:
    """SIGKILL a client that ran past its time limit (it is still our unreaped child)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
