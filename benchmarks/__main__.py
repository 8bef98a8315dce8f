"""``python -m benchmarks [--size-mib N | --quick] [--repeat N] [--no-write]`` — see :mod:`benchmarks`.

    $ .venv/bin/python -m benchmarks --quick --no-write

Order of a run, all against one fresh registry in a temp dir: push the busybox base (untimed);
then ``--repeat`` rounds in which each contender in turn writes its own fresh random payload
(untimed, right before its push so that every contender reads a file that is hot in the page
cache) and pushes it (timed); then ecr-oci's no-op re-push of the last round's bundle, ``--repeat``
times; then the code-only update with podman. The temp dir (registry store, payloads, podman
storage, ecr-oci's layer caches) is removed at the end and the registry stopped.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import report
from benchmarks.contenders import (
    ECR,
    PEERS,
    Prepare,
    PushFigure,
    PushSeries,
    bundle_version,
    ecr_oci_preparer,
    ecr_oci_push,
    find_tool,
    peer_preparer,
    timed_push,
)
from benchmarks.machine import describe_machine
from benchmarks.measure import BenchError, rss_floor_mb
from benchmarks.payload import bump_code
from benchmarks.report import Results, UpdateFigure, console_table, markdown_section, write_section
from ecr_oci.devenv import DevEnvError, LocalRegistry, PodmanEnv, build_busybox_base, require_program

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
QUICK_MIB = 64
DEFAULT_MIB = 1024
DEFAULT_REPEAT = 5
REPOSITORY = "bench/ecr-oci"  # metadata namespace/name in payload._ecr_yaml


#: Progress on stderr, so that stdout holds only the table.
say = functools.partial(report.say, prefix="[bench] ")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark `ecr-oci push` against oras, crane and skopeo on one fresh local registry; "
        "the method and the targets are in docs/benchmarks.md.",
    )
    parser.add_argument(
        "--size-mib", type=int, default=DEFAULT_MIB, help="model size in MiB per contender (default 1024)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run with a {QUICK_MIB} MiB model (overrides --size-mib)"
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="rounds of full pushes; medians are reported"
    )
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.size_mib <= 0 or args.repeat <= 0:
        parser.error("--size-mib and --repeat must be positive")
    return args


def _contenders(base: str) -> tuple[dict[str, Prepare], list[str]]:
    """ecr-oci and the installed peers, in running order; the missing peers are said loudly."""
    contenders: dict[str, Prepare] = {ECR: ecr_oci_preparer(base)}
    missing: list[str] = []
    for name in PEERS:
        tool = find_tool(name)
        if tool is None:
            missing.append(name)
            print(
                f"!!! PEER MISSING: {name} not found in .tools/bin or on PATH — run `make install`;"
                " continuing without it",
                file=sys.stderr,
                flush=True,
            )
        else:
            contenders[name] = peer_preparer(name, tool)
    return contenders, missing


def _report(figure: PushFigure) -> PushFigure:
    rate = f"{figure.mb_per_s:.1f} MB/s" if figure.payload_bytes else "nothing sent"
    say(
        f"{figure.name}: {figure.wall_s:.2f} s, {rate}, peak RSS {figure.peak_rss_mb:.0f} MB, "
        f"CPU {figure.cpu_s:.2f} s (registry {figure.registry_cpu_s:.2f} s)"
    )
    return figure


def _full_pushes(
    contenders: dict[str, Prepare], registry: LocalRegistry, work: Path, size: int, repeat: int
) -> list[PushSeries]:
    """Round-robin, so that drift (a filling disk, a busier neighbour) hits every contender alike."""
    runs: dict[str, list[PushFigure]] = {name: [] for name in contenders}
    for round_ in range(repeat):
        for name, prepare in contenders.items():
            say(f"round {round_ + 1}/{repeat}: fresh {size >> 20} MiB random payload for {name}")
            push = prepare(registry.host, work, size, round_)
            runs[name].append(_report(timed_push(push, registry=registry)))
    return [PushSeries(name, figures) for name, figures in runs.items()]


def _noop_pushes(bundle: Path, registry: LocalRegistry, cache: Path, repeat: int) -> PushSeries:
    """Re-push the bundle unchanged with its warm layer cache; each must report unchanged=true."""
    runs = []
    for _ in range(repeat):
        push = ecr_oci_push(bundle, registry.host, cache_home=cache, name="ecr-oci no-op")
        figure = _report(timed_push(push, registry=registry))
        if not figure.output.get("unchanged") or figure.payload_bytes:
            raise BenchError(f"the re-push of an unchanged bundle was not a no-op: {figure.output}")
        runs.append(figure)
    return PushSeries("ecr-oci no-op", runs)


def _timed_pull(node: PodmanEnv, registry: LocalRegistry, ref: str) -> tuple[float, int]:
    """``podman pull REF``: (wall s, bytes the registry served for it, from its log).

    The requests are listed on stderr, so a surprising byte count can be explained from the run.
    """
    offset = registry.log_offset()
    started = time.perf_counter()
    node.pull(ref)
    wall = time.perf_counter() - started
    served = registry.bytes_served(offset)
    for response in registry.responses(offset):
        say(f"  {response.method} {response.path} -> {response.status}, {response.written:,} B")
    return wall, served


def _code_update(
    registry: LocalRegistry, bundle: Path, base: str, cache: Path, round_: int, node_root: Path
) -> UpdateFigure:
    """Pull v1 into a fresh podman node, push a v2 that changes one code file, pull v2."""
    v1, v2 = bundle_version(round_), bundle_version(round_, update=True)
    node = PodmanEnv(node_root, insecure_registries=[registry.host])
    try:
        pull_v1 = _timed_pull(node, registry, f"{registry.host}/{REPOSITORY}:{v1}")
        say(f"podman pull {v1}: {pull_v1[0]:.2f} s, registry served {pull_v1[1]:,} B")
        bump_code(bundle, base=base, version=v2)
        v2_push = ecr_oci_push(bundle, registry.host, cache_home=cache, name="ecr-oci v2")
        push = _report(timed_push(v2_push, registry=registry))
        code = next(layer for layer in push.output["layers"] if layer["role"] == "code")
        pull_v2 = _timed_pull(node, registry, f"{registry.host}/{REPOSITORY}:{v2}")
        say(f"podman pull {v2}: {pull_v2[0]:.2f} s, registry served {pull_v2[1]:,} B")
    finally:
        node.remove_all()
    return UpdateFigure(push, int(code["size"]), *pull_v1, *pull_v2)


def _load() -> str:
    """The 1-minute load average over the CPU count, e.g. ``0.12 on 2 CPUs``."""
    return f"{os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} CPUs"


def _warn_if_busy() -> str:
    """Say loudly when other work is running: on a 2-core machine it skews every figure."""
    load = _load()
    if os.getloadavg()[0] > 0.5 * len(os.sched_getaffinity(0)):
        print(
            f"!!! MACHINE BUSY: load average {load}; the figures will be noisy", file=sys.stderr, flush=True
        )
    return load


def run_benchmark(work: Path, size: int, repeat: int) -> tuple[Results, dict[str, str]]:
    """The whole measurement in ``work``; the registry is stopped before this returns."""
    require_program("podman")
    load_before = _warn_if_busy()
    with LocalRegistry(work / "registry") as registry:
        say(f"registry on {registry.host}; pushing the busybox base image (untimed)")
        base = build_busybox_base(registry.host, workdir=work / "base")
        contenders, missing = _contenders(base)
        pushes = _full_pushes(contenders, registry, work, size, repeat)
        last = repeat - 1
        bundle, cache = work / f"bundle-r{last}", work / f"cache-r{last}"
        noop = _noop_pushes(bundle, registry, cache, repeat)
        update = _code_update(registry, bundle, base, cache, last, work / "podman")
    programs = {name: find_tool(name) or name for name in ("docker-registry", *PEERS, "podman")}
    results = Results(size, repeat, pushes, missing, noop, update, rss_floor_mb())
    machine = describe_machine(programs)
    machine["load average (1 min) at start"] = load_before
    return results, machine


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    mib = QUICK_MIB if args.quick else args.size_mib
    command = "python -m benchmarks" + (
        " --quick" if args.quick else f" --size-mib {mib}" * (mib != DEFAULT_MIB)
    )
    command += f" --repeat {args.repeat}" * (args.repeat != DEFAULT_REPEAT)
    try:
        with tempfile.TemporaryDirectory(prefix="ecr-bench-") as tmp:
            results, machine = run_benchmark(Path(tmp), mib << 20, args.repeat)
    except (BenchError, DevEnvError) as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        return 1
    print(console_table(results))
    if not args.no_write:
        write_section(DOCS, markdown_section(results, machine, command=command))
        say(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
