"""Run a bundle and profile it: as a local process from its directory, or as a podman container.

    >>> from pathlib import Path
    >>> request = RunRequest(inputs={"burn_seconds": "1"})
    >>> profile = profile_directory(Path("examples/cpu-burner"), request)  # doctest: +SKIP
    >>> profile.measures.cpu_s                                            # doctest: +SKIP
    1.0

Both runtimes sample the plugin's process tree from ``/proc`` (:mod:`.sampling`), read its metric
lines from stdout (and from ``metrics_file`` if the plugin writes one; :mod:`.metrics`), and stop it
after ``duration`` seconds (SIGTERM, then SIGKILL after ``grace`` seconds) unless it exits first.

- **process** (a Virtual Waggle without a container runtime): the entrypoint of ``ecr.yaml`` runs on
  this machine from the bundle directory. Paths in the image are mapped back to the directory: an
  argument or working directory under ``code.target`` (``/app``) or ``model.target`` (``/models``)
  becomes the same path under ``code.path``/``model.path``. So the entrypoint's program must exist
  here (``/bin/busybox`` for the examples), and code that opens ``/models/...`` by absolute path
  should take the folder from its arguments or working directory instead. CPU time comes from
  ``wait4``'s rusage of the whole tree, exact; peak RSS from sampling (``ru_maxrss`` would count the
  forked Python's pages from before the exec).
- **podman**: ``podman run -d`` of the pulled image; the container's processes are sampled through
  the PID ``podman inspect`` gives; wall time is the container's own start and finish time.

Raises :class:`ProfileRunError` when the bundle cannot be started (missing program, podman failure)
and :class:`~ecr_oci.errors.BundleSpecError` for a bad ``ecr.yaml`` or an unknown input.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ecr_oci.bundle.spec import BundleSpec, input_env_name
from ecr_oci.bundle.spec_loader import load_spec
from ecr_oci.errors import BundleSpecError, Error
from ecr_oci.profile.device import EnergyMeter, GpuSampler, describe_device, software_versions
from ecr_oci.profile.metrics import MetricSamples, percentile
from ecr_oci.profile.model import Measures, Profile, Workload
from ecr_oci.profile.sampling import DEFAULT_INTERVAL, TreeMeasures, TreeSampler, read_stat

#: Seconds between SIGTERM and SIGKILL when the duration is over (podman's default stop time too).
DEFAULT_GRACE = 10.0
_POLL = 0.02


class ProfileRunError(Error):
    """The bundle could not be run (its program is missing, podman failed)."""


@dataclass(frozen=True)
class RunRequest:
    """What to run and for how long; shared by both runtimes.

    ``inputs`` are by input id (``burn_seconds``); they reach the plugin as environment variables
    (``BURN_SECONDS``) as on a node. ``args`` replace the image's ``cmd``. ``duration`` ``None``: let
    it run until it exits.
    """

    args: Sequence[str] = ()
    inputs: Mapping[str, str] | None = None
    duration: float | None = None
    device_name: str | None = None
    metrics_file: str | None = None
    interval: float = DEFAULT_INTERVAL
    grace: float = DEFAULT_GRACE


@dataclass
class _Observed:
    """What one run gave, before it becomes a :class:`Profile`."""

    wall_s: float
    exit_status: int | None
    tree: TreeMeasures
    stdout_metrics: MetricSamples
    cpu_s: float | None = None  # exact, where the runtime has it (rusage)


def _profile(
    request: RunRequest,
    observed: _Observed,
    *,
    runtime: str,
    reference: str,
    started: datetime,
    gpu: GpuSampler,
    energy: EnergyMeter,
) -> Profile:
    tree = observed.tree
    cpu = observed.cpu_s if observed.cpu_s is not None else tree.cpu_s
    peaks = gpu.stop()
    measures = Measures(
        wall_s=round(observed.wall_s, 3),
        cpu_s=round(cpu, 3) if cpu is not None else None,
        cpu_percent_p50=round(percentile(tree.cpu_percent, 0.5), 1) if tree.cpu_percent else None,
        cpu_percent_p95=round(percentile(tree.cpu_percent, 0.95), 1) if tree.cpu_percent else None,
        peak_rss_bytes=tree.peak_rss_bytes,
        gpu_util_percent_peak=peaks.util_percent,
        gpu_memory_peak_bytes=peaks.memory_bytes,
        energy_j=energy.joules(),
        exit_status=observed.exit_status,
        samples=tree.samples,
    )
    metrics = observed.stdout_metrics.summaries()
    return Profile(
        created=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        device=describe_device(name=request.device_name),
        software=software_versions(runtime),
        workload=Workload(
            reference=reference,
            args=list(request.args) or None,
            inputs=dict(request.inputs) if request.inputs else None,
            duration_s=request.duration,
        ),
        measures=measures,
        metrics=metrics or None,
    )


def _read_lines(stream: IO[str], samples: MetricSamples, echo: Callable[[str], None] | None) -> None:
    for line in stream:
        samples.feed_line(line)
        if echo is not None:
            echo(line.rstrip("\n"))


# --- process runtime -------------------------------------------------------------------------------


def _map_path(value: str, mounts: Sequence[tuple[str, Path]]) -> str:
    for target, local in mounts:
        if value == target or value.startswith(target + "/"):
            return str(local / posixpath.relpath(value, target))
    return value


def process_command(
    spec: BundleSpec, directory: Path, request: RunRequest
) -> tuple[list[str], Path, dict[str, str]]:
    """argv, working directory and environment that run ``spec`` from ``directory`` locally."""
    mounts = [(spec.code.target, directory / spec.code.path)]
    if spec.model is not None:
        mounts.append((spec.model.target, directory / spec.model.path))
    argv = [_map_path(arg, mounts) for arg in [*spec.runtime.entrypoint, *(request.args or spec.runtime.cmd)]]
    workdir = Path(_map_path(spec.runtime.workdir, mounts)) if spec.runtime.workdir else mounts[0][1]
    if not workdir.is_dir():
        workdir = mounts[0][1]
    known = {item.id: item for item in spec.inputs}
    env = spec.input_defaults_env()
    env.update(spec.runtime.env)
    for key, value in (request.inputs or {}).items():
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise BundleSpecError(
                f"input {key!r} is not declared (declared: {names})",
                file=str(directory / "ecr.yaml"),
                field="inputs",
            )
        env[input_env_name(key)] = value
    return argv, workdir, env


def profile_directory(
    directory: Path,
    request: RunRequest | None = None,
    *,
    reference: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> Profile:
    """Run the bundle in ``directory`` as a local process and profile it (the ``process`` runtime).

    ``reference`` is recorded as the workload's reference (default ``namespace/name:version``);
    ``echo`` receives each line the plugin prints on stdout. Raises :class:`ProfileRunError` when the
    entrypoint cannot be started.
    """
    request = request or RunRequest()
    spec = load_spec(directory, git=False).spec
    argv, workdir, env = process_command(spec, directory.resolve(), request)
    program = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if program is None or not Path(program).exists():
        raise ProfileRunError(
            f"{argv[0]} (the entrypoint of {directory}/ecr.yaml) is not on this machine; "
            "install it or use --runtime podman"
        )
    samples = MetricSamples()
    gpu, energy = GpuSampler().start(), EnergyMeter().start()
    started = datetime.now(UTC)
    begin = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: the stop signal reaches the whole tree
        )
    except OSError as err:
        gpu.stop()
        raise ProfileRunError(f"cannot start {argv[0]}: {err.strerror}") from None
    assert proc.stdout is not None
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, samples, echo), daemon=True)
    reader.start()
    sampler = TreeSampler(proc.pid, interval=request.interval).start()
    status, usage = _wait_process(proc, request, sampler)
    wall = time.monotonic() - begin
    tree = sampler.stop()
    reader.join(timeout=5)
    proc.stdout.close()
    if request.metrics_file:
        samples.feed_file(workdir / request.metrics_file)
    observed = _Observed(
        wall_s=wall,
        exit_status=_exit_status(status),
        tree=tree,
        stdout_metrics=samples,
        # not ru_maxrss: it counts the forked Python's pages from before the exec (tens of MB)
        cpu_s=usage.ru_utime + usage.ru_stime,
    )
    name = reference or f"{spec.repository}:{spec.metadata.version}"
    return _profile(
        request, observed, runtime="process", reference=name, started=started, gpu=gpu, energy=energy
    )


def _wait_process(
    proc: subprocess.Popen[str], request: RunRequest, sampler: TreeSampler
) -> tuple[int, resource.struct_rusage]:
    """Wait for the root to exit (stopping it after the duration); its status and the tree's rusage."""
    deadline = None if request.duration is None else time.monotonic() + request.duration
    killed_at: float | None = None
    while True:
        if _is_zombie(proc.pid):
            sampler.sample_once()  # the last look at its children before the reap
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        now = time.monotonic()
        if deadline is not None and now >= deadline and killed_at is None:
            _signal_group(proc.pid, signal.SIGTERM)
            killed_at = now
        elif killed_at is not None and now >= killed_at + request.grace:
            _signal_group(proc.pid, signal.SIGKILL)
        time.sleep(_POLL)


def _is_zombie(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state == "Z"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exit_status(status: int) -> int:
    """The shell's convention: the exit code, or 128 + the signal that ended it (as podman reports)."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


# --- podman runtime --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Podman:
    """How to call podman: the command (``podman`` or ``podman --runtime runc``) and its environment.

    ``env`` adds variables (``CONTAINERS_CONF`` …) to this process's environment; ``tls_verify``
    ``False`` pulls over plain HTTP (``--insecure``).
    """

    command: Sequence[str] = ("podman",)
    env: Mapping[str, str] | None = None
    tls_verify: bool = True
    timeout: float = 600.0

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*self.command, *args]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                env={**os.environ, **(self.env or {})},
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise ProfileRunError(
                f"{argv[0]} is not installed; install podman or use --runtime process"
            ) from None
        except subprocess.TimeoutExpired:
            raise ProfileRunError(f"`{' '.join(argv[:3])} …` took over {self.timeout:.0f}s") from None
        if check and done.returncode != 0:
            message = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise ProfileRunError(f"`podman {args[0]}` failed: {message[0]}")
        return done

    def version(self) -> str:
        text = self.run("--version", check=False).stdout.strip()  # "podman version 4.3.1"
        return "podman " + text.rsplit(" ", 1)[-1] if text else "podman"


def profile_image(
    reference: str, request: RunRequest | None = None, *, podman: Podman | None = None
) -> Profile:
    """Pull ``reference`` and profile it with ``podman run`` (the ``podman`` runtime).

    The container runs detached with a unique name, is stopped after the duration (``podman stop``
    sends SIGTERM, then SIGKILL after ``grace``) and removed at the end, whatever happens.
    """
    request = request or RunRequest()
    podman = podman or Podman()
    podman.run("pull", "--quiet", f"--tls-verify={str(podman.tls_verify).lower()}", reference)
    env_args = [f"--env={input_env_name(k)}={v}" for k, v in (request.inputs or {}).items()]
    name = f"ecr-profile-{uuid.uuid4().hex[:12]}"
    samples = MetricSamples()
    gpu, energy = GpuSampler().start(), EnergyMeter().start()
    started = datetime.now(UTC)
    begin = time.monotonic()
    try:
        podman.run("run", "--detach", f"--name={name}", *env_args, reference, *request.args)
        state = _inspect_state(podman, name)
        pid = _state_pid(state)
        sampler = TreeSampler(pid, interval=request.interval)
        if pid:
            sampler.start()
        _wait_container(podman, name, request, begin, state_pid=pid)
        tree = sampler.stop()
        done = podman.run("wait", name, check=False)
        state = _inspect_state(podman, name)
        logs = podman.run("logs", name, check=False)
        samples.feed_lines(logs.stdout.splitlines())
        if request.metrics_file:
            with tempfile.TemporaryDirectory() as scratch:
                copied = Path(scratch) / "metrics"
                if (
                    podman.run("cp", f"{name}:{request.metrics_file}", str(copied), check=False).returncode
                    == 0
                ):
                    samples.feed_file(copied)
        wall = _container_wall(state) or (time.monotonic() - begin)
        exit_code = state.get("ExitCode")
        status = int(exit_code) if isinstance(exit_code, int) else _int_or_none(done.stdout.strip())
    finally:
        podman.run("rm", "--force", name, check=False)
    observed = _Observed(wall_s=wall, exit_status=status, tree=tree, stdout_metrics=samples)
    return _profile(
        request,
        observed,
        runtime=podman.version(),
        reference=reference,
        started=started,
        gpu=gpu,
        energy=energy,
    )


def _state_pid(state: Mapping[str, object]) -> int:
    """The container's init PID in this machine's ``/proc``; 0 when it is not running."""
    pid = state.get("Pid")
    return pid if isinstance(pid, int) else 0


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _inspect_state(podman: Podman, name: str) -> dict[str, object]:
    done = podman.run("inspect", "--type=container", "--format={{json .State}}", name)
    state = json.loads(done.stdout or "{}")
    return state if isinstance(state, dict) else {}


def _wait_container(podman: Podman, name: str, request: RunRequest, begin: float, *, state_pid: int) -> None:
    """Until the container's init process is gone (or, without a PID, podman says it stopped)."""
    deadline = None if request.duration is None else begin + request.duration
    while True:
        if state_pid:
            if not Path(f"/proc/{state_pid}").exists() or _is_zombie(state_pid):
                return
        elif not _inspect_state(podman, name).get("Running"):
            return
        if deadline is not None and time.monotonic() >= deadline:
            podman.run("stop", f"--time={max(int(request.grace), 1)}", name, check=False)
            return
        time.sleep(_POLL if state_pid else 0.5)


def _container_wall(state: Mapping[str, object]) -> float | None:
    """FinishedAt - StartedAt of ``podman inspect`` (Go times with nanoseconds), seconds."""
    try:
        start, finish = (_go_time(str(state[key])) for key in ("StartedAt", "FinishedAt"))
    except (KeyError, ValueError):
        return None
    seconds = (finish - start).total_seconds()
    return seconds if seconds >= 0 else None


def _go_time(text: str) -> datetime:
    """``2024-05-01T10:00:00.123456789Z`` or ``… +0000 UTC`` → an aware datetime (µs precision)."""
    text = text.strip()
    if " " in text:  # Go's default String(): "2024-05-01 10:00:00.123456789 +0000 UTC"
        parts = text.split(" ")
        text = f"{parts[0]}T{parts[1]}{parts[2][:3]}:{parts[2][3:]}"
    head, sep, tail = text.partition(".")
    if sep:
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
