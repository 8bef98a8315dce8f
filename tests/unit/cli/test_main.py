"""The command table of the lazily loading CLI matches what the modules register."""

from __future__ import annotations

import importlib
import subprocess
import sys

from ecr_oci.cli.main import COMMAND_MODULES, cli


def test_every_command_is_found_in_the_module_the_table_names():
    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"ecr_oci.cli.{module}")
    registered = {name: command.callback.__module__ for name, command in cli.commands.items()}
    assert registered == {name: f"ecr_oci.cli.{m}" for name, m in COMMAND_MODULES.items()}


def test_push_does_not_import_the_service_or_signing_stacks():
    code = (
        "import sys; from ecr_oci.cli.main import cli; cli.get_command(None, 'push'); "
        "print(','.join(m for m in ('fastapi', 'sqlalchemy', 'ecr_oci.server') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
