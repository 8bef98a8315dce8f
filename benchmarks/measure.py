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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BenchError",
    "Run",
    "drop_file_cache",
    "percentile",
    "process_cpu_s",
    "rss_floor_mb",
    "run_measured",
]

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
    #: user + system CPU seconds of the client: far steadier than wall time on a shared machine
    cpu_s: float
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
        wall, rss, cpu = result.read_text().split()
    return Run(tuple(argv), returncode, float(wall), int(rss), float(cpu), stdout, stderr)


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


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a running process (all its threads) has used so far.

    Read before and after a push for the registry: on loopback the registry, not the network, is
    the bottleneck (REFERENCE.md), so its CPU per push shows what a client's request pattern costs
    the server. Raises ``OSError`` when the process is gone.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # fields after the ")" that closes the command name: state is field 3, utime 14, stime 15
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``: the sample nearest rank ``q * (n - 1)``, no
    interpolation, so the figure is always one that was measured. Raises ``IndexError`` when empty.

        >>> percentile([5.0, 1.0, 4.0, 2.0, 3.0], 0.5)
        3.0
    """
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def drop_file_cache(folder: Path) -> None:
    """Flush dirty pages, then ask the kernel to forget the cached pages of every file in ``folder``.

    Why: the registry keeps every contender's upload (GiBs per round). Once they fill the page
    cache, each new push makes the kernel reclaim pages while the registry writes, charged to the
    registry's CPU: its cost per GiB rose from ~2.6 to ~5 CPU-seconds through a run and single
    pushes varied by +-40 %. Evicting the store before each push (``POSIX_FADV_DONTNEED`` on
    clean pages; no root needed, nothing outside ``folder`` touched) kept runs within +-7 %.
    """
    os.sync()
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                fd = os.open(Path(root) / name, os.O_RDONLY)
            except OSError:
                continue  # a file the registry just moved or deleted
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
