"""``ecr-oci validate`` and ``ecr-oci init``: check or start an ``ecr.yaml``.

    $ ecr-oci init hello --namespace waggle
    $ ecr-oci validate hello
    ok: waggle/hello 0.1.0 (1 input, code src → /app)

Thin by design (STYLE §10): each command calls one library function (``load_spec``,
``write_starter``) and renders the result; errors are ``BundleSpecError``, which
:mod:`ecr_oci.cli.main` prints as one line (exit status 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecr_oci.bundle.spec import BundleSpec
from ecr_oci.bundle.spec_loader import SPEC_FILE, load_spec
from ecr_oci.bundle.starter import default_name, write_starter
from ecr_oci.cli.main import cli


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the normalised spec as JSON.")
def validate(directory: Path, as_json: bool) -> None:
    """Check DIRECTORY/ecr.yaml and the files it references.

    Reports the first problem with its file, line and field, and how to fix it (exit status 2).
    When the directory is in a git work tree and metadata.source is omitted, the commit and remote
    are filled in (shown with --json).

    \b
    Example:
      ecr-oci validate examples/hello-sensor
      ok: waggle/hello-sensor 0.1.0 (1 input, code src → /app, model model → /models)
    """
    loaded = load_spec(directory)
    if as_json:
        click.echo(json.dumps(loaded.spec.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"ok: {summary(loaded.spec)}")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--namespace", default="waggle", show_default=True, help="Owner of the plugin (user or team).")
@click.option(
    "--name", default=None, help="Plugin name [default: DIRECTORY's name, lower-cased and cleaned]."
)
def init(directory: Path, namespace: str, name: str | None) -> None:
    """Write a commented starter ecr.yaml and src/run.sh into DIRECTORY.

    DIRECTORY is created if needed; an existing ecr.yaml is never overwritten. The starter is valid
    as written: every key is explained in a comment, optional sections are commented out.

    \b
    Example:
      ecr-oci init hello-sensor --namespace waggle
      ecr-oci validate hello-sensor
    """
    plugin = name if name is not None else default_name(directory)
    for path in write_starter(directory, namespace=namespace, name=plugin):
        click.echo(f"wrote {path}")
    click.echo(f"next: edit {directory / SPEC_FILE}, then run `ecr-oci validate {directory}`")


def summary(spec: BundleSpec) -> str:
    """``waggle/hello-sensor 0.1.0 (1 input, code src → /app, model model → /models)``."""
    count = len(spec.inputs)
    parts = [
        f"{count} input{'' if count == 1 else 's'}",
        f"code {spec.code.path} → {spec.code.target}",
    ]
    if spec.model is not None:
        parts.append(f"model {spec.model.path} → {spec.model.target}")
    if spec.data is not None:
        parts.append(f"data {spec.data.path}")
    if spec.profile is not None:
        parts.append(f"profile {spec.profile.path}")
    return f"{spec.repository} {spec.metadata.version} ({', '.join(parts)})"
