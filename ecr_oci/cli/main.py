"""The ``ecr-oci`` command: a thin click layer over the library.

    $ ecr-oci push examples/hello-sensor --registry 127.0.0.1:5000 --insecure

Every command module registers itself on :data:`cli`; errors from the library (``ecr_oci.errors.Error``)
become one line on stderr and the error's exit code, with the traceback only under ``--verbose``.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from ecr_oci.errors import Error

#: Which module defines each command. Commands are imported on first use, so ``ecr-oci push`` does
#: not pay for the service's or the signing stack's imports (start-up time counts in a no-op push).
COMMAND_MODULES: dict[str, str] = {
    "admin": "admin",
    "approve": "attest", "attest": "attest", "verify-attestation": "attest",
    "db": "service", "index": "service", "serve": "service",
    "dev": "dev",
    "init": "spec", "validate": "spec",
    "inspect": "transfer", "pull": "transfer", "push": "transfer",
    "keygen": "signing", "sign": "signing", "verify": "signing",
    "login": "login", "logout": "login",
    "node": "node",
    "policy": "policy",
    "profile": "profile",
    "search": "search", "show": "search",
}  # fmt: skip


class _Cli(click.Group):
    """A lazily loading group whose invocation turns library errors into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            # the module registers its commands on ``cli`` with ``@cli.command()`` when imported
            importlib.import_module(f"ecr_oci.cli.{COMMAND_MODULES[cmd_name]}")
        return self.commands.get(cmd_name)

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


def main() -> None:
    cli(prog_name="ecr-oci")
