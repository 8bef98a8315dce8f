"""Run one client program and measure its wall time and its own peak RSS.

    >>> run = run_measured(["true"])                  # doctest: +SKIP
    >>> run.wall_s, run.peak_rss_mb                   # doctest: +SKIP
    (0.001, 2.1)

The RSS is the ``ru_maxrss`` that ``os.wait4`` returns for exactly that client's PID (KiB on
Linux). ``getrusage(RUSAGE_CHILDREN)`` would not do: it is the largest of *all* reaped children, so
after the first contender every later figure would be polluted by the biggest earlier one. And the
client is not spawned from this process but through :mod:`benchmarks._spawn`, a tiny interpreter
that does the ``wait4``, because the kernel folds a parent's RSS high-water mark into its child's
``ru_maxrss`` across fork/exec: spawned from here every client would report at least this
process's peak (measured at 81 MB for all four contenders before this indirection).
:func:`rss_floor_mb` is what the indirection still adds (``true`` run the same way).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchError", "Run", "rss_floor_mb", "run_measured"]

_SPAWN = Path(__file__).with_name("_spawn.py")


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
    pipe. The launcher and the client run in their own session, so a timeout kills both.
    """
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        result = Path(tmp) / "result"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_SPAWN), str(result), *argv],
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            returncode = _wait(proc, timeout, argv)
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if returncode != 0:
            detail = (stderr.strip() or stdout.strip())[-2000:]
            raise BenchError(f"`{' '.join(argv)}` exited with status {returncode}: {detail}")
        wall, rss = result.read_text().split()
    return Run(tuple(argv), returncode, float(wall), int(rss), stdout, stderr)


def _wait(proc: subprocess.Popen[bytes], timeout: float, argv: Sequence[str]) -> int:
    """Wait for the launcher; on timeout kill its whole session (launcher and client)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None


def rss_floor_mb() -> float:
    """The peak RSS reported for ``true``: what the launcher's own footprint adds to every figure."""
    return run_measured(["true"]).peak_rss_mb
