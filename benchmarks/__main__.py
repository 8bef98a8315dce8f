"""``python -m benchmarks [--size-mib N | --quick] [--no-write]`` — see :mod:`benchmarks`.

    $ .venv/bin/python -m benchmarks --quick --no-write

Order of a run, all against one fresh registry in a temp dir: push the busybox base (untimed),
write every contender's random payload (untimed), time ecr-oci's full push and each peer's, time
ecr-oci's no-op re-push, then the code-only update with podman. The temp dir (registry store,
payloads, podman storage, ecr-oci's layer cache) is removed at the end, the registry stopped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.contenders import (
    PEERS,
    Push,
    PushFigure,
    ecr_oci_push,
    find_tool,
    prepare_crane,
    prepare_oras,
    prepare_skopeo,
    timed_push,
)
from benchmarks.machine import describe_machine
from benchmarks.measure import BenchError, rss_floor_mb
from benchmarks.payload import bump_code, write_bundle
from benchmarks.report import Results, UpdateFigure, console_table, markdown_section, write_section
from ecr_oci.devenv import DevEnvError, LocalRegistry, PodmanEnv, build_busybox_base, require_program

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
QUICK_MIB = 64
V1, V2 = "1.0.0", "1.0.1"
REPOSITORY = "bench/ecr-oci"  # metadata namespace/name in payload._ecr_yaml

Prepare = Callable[[str, str, Path, int], Push]
_PREPARE: dict[str, Prepare] = {"oras": prepare_oras, "crane": prepare_crane, "skopeo": prepare_skopeo}


def say(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mib", type=int, default=1024, help="model size in MiB for every contender (default 1024)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run with a {QUICK_MIB} MiB model (overrides --size-mib)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.size_mib <= 0:
        parser.error("--size-mib must be positive")
    return args


def _find_peers() -> tuple[dict[str, str], list[str]]:
    """Paths of the peers that are installed, and the names of those that are not (said loudly)."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in PEERS:
        path = find_tool(name)
        if path is None:
            missing.append(name)
            print(
                f"!!! PEER MISSING: {name} not found in .tools/bin or on PATH — run `make install`;"
                " continuing without it",
                file=sys.stderr,
                flush=True,
            )
        else:
            found[name] = path
    return found, missing


def _prepare_peers(peers: dict[str, str], host: str, work: Path, size: int) -> list[Push]:
    prepared = []
    for name, tool in peers.items():
        say(f"writing {size >> 20} MiB of fresh random data for {name}")
        prepared.append(_PREPARE[name](tool, host, work, size))
    return prepared


def _report(figure: PushFigure) -> PushFigure:
    say(
        f"{figure.name}: {figure.wall_s:.2f} s, {figure.mb_per_s:.1f} MB/s, "
        f"peak RSS {figure.peak_rss_mb:.0f} MB"
    )
    return figure


def _timed_pull(node: PodmanEnv, registry: LocalRegistry, ref: str) -> tuple[float, int]:
    """``podman pull REF``: (wall s, bytes the registry served for it, from its log)."""
    offset = registry.log_offset()
    started = time.perf_counter()
    node.pull(ref)
    wall = time.perf_counter() - started
    return wall, registry.bytes_served(offset)


def _code_update(
    registry: LocalRegistry, bundle: Path, base: str, cache: Path, node_root: Path
) -> UpdateFigure:
    """Pull v1 into a fresh podman node, push a v2 that changes one code file, pull v2."""
    node = PodmanEnv(node_root, insecure_registries=[registry.host])
    try:
        pull_v1 = _timed_pull(node, registry, f"{registry.host}/{REPOSITORY}:{V1}")
        say(f"podman pull v1: {pull_v1[0]:.2f} s, registry served {pull_v1[1]:,} B")
        bump_code(bundle, base=base, version=V2)
        push = _report(ecr_oci_push(bundle, registry.host, cache_home=cache, name="ecr-oci v2"))
        code = next(layer for layer in push.output["layers"] if layer["role"] == "code")
        pull_v2 = _timed_pull(node, registry, f"{registry.host}/{REPOSITORY}:{V2}")
        say(f"podman pull v2: {pull_v2[0]:.2f} s, registry served {pull_v2[1]:,} B")
    finally:
        node.remove_all()
    return UpdateFigure(push, int(code["size"]), *pull_v1, *pull_v2)


def run_benchmark(work: Path, size: int) -> tuple[Results, dict[str, str]]:
    """The whole measurement in ``work``; the registry is stopped before this returns."""
    peers, missing = _find_peers()
    require_program("podman")
    with LocalRegistry(work / "registry") as registry:
        host = registry.host
        say(f"registry on {host}; pushing the busybox base image (untimed)")
        base = build_busybox_base(host, workdir=work / "base")
        say(f"writing the bench bundle with a {size >> 20} MiB random model")
        bundle = work / "bundle"
        write_bundle(bundle, base=base, version=V1, model_size=size)
        prepared = _prepare_peers(peers, host, work, size)
        cache = work / "xdg-cache"
        pushes = [_report(ecr_oci_push(bundle, host, cache_home=cache))]
        pushes += [_report(timed_push(push)) for push in prepared]
        noop = _report(ecr_oci_push(bundle, host, cache_home=cache, name="ecr-oci no-op"))
        if not noop.output.get("unchanged"):
            say("!!! the re-push did not report unchanged=true")
        update = _code_update(registry, bundle, base, cache, work / "podman")
    machine = describe_machine({"docker-registry": "docker-registry", **peers, "podman": "podman"})
    return Results(size, pushes, missing, noop, update, rss_floor_mb()), machine


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    mib = QUICK_MIB if args.quick else args.size_mib
    command = "python -m benchmarks" + (
        " --quick" if args.quick else f" --size-mib {mib}" if mib != 1024 else ""
    )
    try:
        with tempfile.TemporaryDirectory(prefix="ecr-bench-") as tmp:
            results, machine = run_benchmark(Path(tmp), mib << 20)
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
