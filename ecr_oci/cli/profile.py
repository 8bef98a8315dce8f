"""``ecr-oci profile run|attach|list``: measure a bundle on this device, publish and list profiles.

    $ ecr-oci profile run examples/cpu-burner --runtime process -o cpu.json
    $ ecr-oci profile attach 127.0.0.1:5000/waggle/cpu-burner:0.1.0 cpu.json --insecure
    $ ecr-oci profile list 127.0.0.1:5000/waggle/cpu-burner:0.1.0 --insecure

Exit codes: 0 ok, 1 registry or run failure, 2 bad input (a malformed profile names the file and the
field, and nothing is attached).
"""

from __future__ import annotations

import re
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from ecr_oci.bundle.pull import pull_bundle
from ecr_oci.cli.main import cli
from ecr_oci.cli.options import (
    Connector,
    RegistryOptions,
    echo_json,
    echo_table,
    human_size,
    parse_pairs,
    registry_options,
)
from ecr_oci.mediatypes import ProfileAnnotation
from ecr_oci.profile.attach import attach_profile, list_profiles
from ecr_oci.profile.model import Profile, load_profile
from ecr_oci.profile.run import Podman, RunRequest, profile_directory, profile_image
from ecr_oci.reference import Reference

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration; write e.g. 60s, 1.5m or 500ms")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _attach_and_report(connect: Connector, reference: str, profile: Profile, *, as_json: bool) -> None:
    ref = Reference.parse(reference)
    attached = attach_profile(connect(ref.registry), ref, profile)
    if as_json:
        echo_json({"attached": attached.to_json_obj()})
        return
    platform = f" ({attached.platform})" if attached.platform else ""
    click.echo(f"attached profile {attached.digest} to {attached.reference}{platform}")


@cli.group()
def profile() -> None:
    """Measure how a bundle runs on this device; attach and list performance profiles.

    \b
    A profile records the device (arch, CPU, memory, NVIDIA GPU), the software, the workload, the
    measures (wall and CPU time, CPU %, peak RSS, GPU, energy where the device reports them) and the
    plugin's own metrics: JSON lines {"metric": "inference_ms", "value": 12.3} on stdout.
    """


@profile.command("run")
@click.argument("target")
@click.argument("args", nargs=-1)
@click.option(
    "--runtime",
    type=click.Choice(["podman", "process"]),
    help="podman: run the image (default for a REF); process: run ecr.yaml's entrypoint here "
    "(default for a directory).",
)
@click.option(
    "--duration", callback=_duration, help="Stop it after this long (60s, 2m): SIGTERM, then SIGKILL."
)
@click.option("--device-name", help="Name of this device in the profile (the hostname is never recorded).")
@click.option("--input", "inputs", multiple=True, metavar="ID=VALUE", help="Set an input (repeatable).")
@click.option("--metrics-file", help="A file the plugin writes metric lines to (path as the plugin sees it).")
@click.option("--attach", is_flag=True, help="Also attach the profile to REF (a REF target only).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the profile here."
)
@click.option("--json", "as_json", is_flag=True, help="With --attach: print the result as JSON.")
@registry_options
def run_command(
    target: str,
    args: tuple[str, ...],
    runtime: str | None,
    duration: float | None,
    device_name: str | None,
    inputs: tuple[str, ...],
    metrics_file: str | None,
    attach: bool,
    output: Path | None,
    as_json: bool,
    insecure: bool,
    authfile: Path | None,
) -> None:
    """Run TARGET (a pushed REF, or a bundle directory) and write its profile.

    \b
    The profile goes to -o FILE, or to standard output. ARGS replace the image's cmd; put them
    after `--`. podman is called with the environment it would see from your shell
    (CONTAINERS_CONF …).

    \b
    Examples:
      ecr-oci profile run examples/cpu-burner --input burn_seconds=3 -o cpu.json
      ecr-oci profile run 127.0.0.1:5000/waggle/memory-hog:0.1.0 --insecure --duration 60s --attach
    """
    is_directory = Path(target).is_dir()
    runtime = runtime or ("process" if is_directory else "podman")
    if attach and is_directory:
        raise click.BadParameter("--attach needs a pushed REF, not a directory", param_hint="TARGET")
    if is_directory and runtime == "podman":
        raise click.BadParameter("a directory runs with --runtime process; push it to use podman")
    request = RunRequest(
        args=args,
        inputs=parse_pairs(inputs, option="--input", metavar="ID=VALUE"),
        duration=duration,
        device_name=device_name,
        metrics_file=metrics_file,
    )
    options = RegistryOptions(insecure=insecure, authfile=authfile)
    with ExitStack() as stack:
        # one connector (the auth files read once) for the pull and the attach, opened only for them
        connect: Connector | None = None
        if is_directory:
            measured = profile_directory(Path(target), request)
        elif runtime == "podman":
            measured = profile_image(target, request, podman=Podman(tls_verify=not insecure))
        else:
            ref = Reference.parse(target)
            connect = stack.enter_context(options.connector())
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-profile-"))
            pulled = pull_bundle(connect(ref.registry), ref, Path(scratch) / "bundle", only={"code", "model"})
            measured = profile_directory(pulled.output, request, reference=target)
        if output is not None:
            output.write_bytes(measured.to_bytes())
        elif not attach:
            click.echo(measured.to_bytes().decode(), nl=False)
        if attach:
            connect = connect or stack.enter_context(options.connector())
            _attach_and_report(connect, target, measured, as_json=as_json)


@profile.command("attach")
@click.argument("reference")
@click.argument("profile_file", metavar="PROFILE.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@registry_options
def attach_command(
    reference: str, profile_file: Path, as_json: bool, insecure: bool, authfile: Path | None
) -> None:
    """Attach PROFILE.json to the platform image of REFERENCE that it measured.

    \b
    For an index the platform is the profile's device.arch. The referrer's annotations carry the
    key figures (device, arch, wall, peak RSS, p95 of each metric) so listings can rank bundles.

    \b
    Example:
      ecr-oci profile attach 127.0.0.1:5000/waggle/cpu-burner:0.1.0 cpu.json --insecure
    """
    measured = load_profile(profile_file)  # a malformed file stops here, before any registry call
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        _attach_and_report(connect, reference, measured, as_json=as_json)


@profile.command("list")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
@registry_options
def list_command(reference: str, as_json: bool, insecure: bool, authfile: Path | None) -> None:
    """List the profiles of the version REFERENCE names (every platform), newest first.

    \b
    Example:
      ecr-oci profile list 127.0.0.1:5000/waggle/cpu-burner:0.1.0 --insecure
    """
    ref = Reference.parse(reference)
    with RegistryOptions(insecure=insecure, authfile=authfile).connector() as connect:
        entries = list_profiles(connect(ref.registry), ref)
    if as_json:
        echo_json({"reference": reference, "profiles": [entry.to_json_obj() for entry in entries]})
        return
    if not entries:
        click.echo(f"{reference}: no profiles")
        return
    rows = []
    for entry in entries:
        rss = entry.figure(ProfileAnnotation.PEAK_RSS_BYTES)
        wall = entry.figure(ProfileAnnotation.WALL_S)
        rows.append(
            (
                entry.digest.hex[:12],
                entry.platform or "-",
                entry.figure(ProfileAnnotation.DEVICE) or "-",
                f"{float(wall):.1f}s" if wall else "-",
                human_size(int(rss)) if rss and rss.isdigit() else "-",
                " ".join(f"{name}={value}" for name, value in entry.metrics_p95().items()) or "-",
                entry.figure("org.opencontainers.image.created") or "-",
            )
        )
    echo_table(("PROFILE", "PLATFORM", "DEVICE", "WALL", "PEAK RSS", "P95 METRICS", "CREATED"), rows)
