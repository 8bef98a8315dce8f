"""The ``ecr-oci`` command: a thin click layer over the library.

    $ ecr-oci push examples/hello-sensor --registry 127.0.0.1:5000 --insecure

Every command module registers itself on :data:`cli`; errors from the library (``ecr_oci.errors.Error``)
become one line on stderr and the error's exit code, with the traceback only under ``--verbose``.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from ecr_oci.errors import Error


class _Cli(click.Group):
    """A group whose invocation turns library errors into one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as err:
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="ecr-oci")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """ecr-oci — the Edge Code Repository for Waggle plugins, on a standard OCI registry.

    \b
    Typical flow:
      ecr-oci init hello                       # a commented starter ecr.yaml
      ecr-oci validate hello                   # check it
      ecr-oci push hello --registry 127.0.0.1:5000 --insecure
      podman pull 127.0.0.1:5000/waggle/hello:0.1.0   # on a node
      ecr-oci pull 127.0.0.1:5000/waggle/hello:0.1.0 -o out --insecure

    Exit codes: 0 ok, 1 failure (registry, network), 2 bad input, 3 version exists (use --force).
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


# The command modules add their commands to ``cli`` when imported (they import ``cli`` from here).
from ecr_oci.cli import attest, dev, policy, signing, spec, transfer  # noqa: E402, F401


def main() -> None:
    cli(prog_name="ecr-oci")
