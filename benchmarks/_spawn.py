"""Run ARGV, then write "WALL_S MAXRSS_KIB CPU_S" to RESULT: ``python -I -S _spawn.py RESULT ARGV...``.

Why a separate, tiny process: Linux carries a parent's RSS high-water mark into a child across fork
and exec (``exec_mmap`` folds the old mm's ``hiwater_rss`` into ``signal->maxrss``), so a client
spawned straight from the benchmark, which holds ecr-oci's imports and 16 MiB random buffers,
would report at least the benchmark's own peak. Spawned from this ~10 MB interpreter (no site, no
imports beyond ``os``/``sys``/``time``), the floor is this process's few MB, which the report
measures with ``true`` and states. The wall time is taken here, around the client only, so the
interpreter's start-up is not on the contender's clock.
"""

import os
import sys
import time


def main() -> int:
    result, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _pid, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(result, "w") as f:  # noqa: PTH123 - pathlib would cost imports (and RSS) here
        f.write(f"{wall:.6f} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.6f}\n")
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
