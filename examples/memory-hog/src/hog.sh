#!/bin/sh
# memory-hog: make one process hold exactly MEGABYTES MiB of written (so resident) memory for
# HOLD_SECONDS. busybox has no allocator to call, but dd has: `dd bs=N` mallocs one N-byte buffer and
# read() fills it, touching every page. With iflag=fullblock and a block one byte larger than what the
# pipe delivers before the sleep, dd sits on the full buffer until the writer closes the pipe.
# (A shell variable or a tmpfs file would not do: the shell copies strings while building them, and
# tmpfs pages are charged to no process's RSS.)
set -eu
megabytes=${MEGABYTES:-200}
hold_seconds=${HOLD_SECONDS:-3}
bytes=$((megabytes * 1024 * 1024))

echo "memory-hog: holding ${megabytes} MiB for ${hold_seconds}s" >&2
{ head -c "$bytes" /dev/zero; sleep "$hold_seconds"; } \
    | dd bs=$((bytes + 1)) count=1 iflag=fullblock of=/dev/null 2>/dev/null
echo "memory-hog: released" >&2
