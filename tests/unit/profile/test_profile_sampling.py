"""Sampling real processes from /proc (no mocks): a child that holds known memory and burns CPU."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from ecr_oci.profile.sampling import TreeSampler, process_tree, read_peak_rss, read_stat

HOLD = 64 * 1024 * 1024
CHILD = f"""
import sys, time
block = bytearray({HOLD})          # zero pages: touch each so it is resident
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.process_time() + 0.5    # then burn 0.5 s of CPU
while time.process_time() < end:
    pass
sys.stdout.write("ready\\n"); sys.stdout.flush()
time.sleep(30)
"""


def test_tree_sampler_sees_memory_and_cpu_of_a_grandchild() -> None:
    # sh -> python: the memory is held by a grandchild of the sampled root
    argv = ["/bin/sh", "-c", f'{sys.executable} -c "$0"; :', CHILD]  # "; :" keeps sh as the parent
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            tree = process_tree(proc.pid)
            assert tree[0].pid == proc.pid and len(tree) == 2
            sampler = TreeSampler(proc.pid, interval=0.02).start()
            time.sleep(0.2)
            measures = sampler.stop()
            assert measures.samples >= 3
            assert measures.peak_rss_bytes is not None
            assert HOLD <= measures.peak_rss_bytes <= HOLD * 1.4  # + the interpreter, ~10-20 MB
            assert measures.cpu_s is not None and 0.45 <= measures.cpu_s <= 2.0
            assert all(rate < 50 for rate in measures.cpu_percent)  # it sleeps while sampled
            grandchild = tree[1].pid
            hwm = read_peak_rss(grandchild)
            assert hwm is not None and hwm >= HOLD
        finally:
            started = [p.pid for p in process_tree(proc.pid)]  # the grandchild too: not left for 30 s
            for pid in reversed(started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    assert read_stat(proc.pid) is None
    assert process_tree(proc.pid) == []
