"""Helpers for push/pull integration tests: a copy of the example bundle aimed at the test registry,
and the ``ecr-oci`` command run as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-sensor"


def write_bundle(
    directory: Path,
    *,
    base: str,
    name: str = "hello-sensor",
    version: str = "0.1.0",
    platforms: str | None = "[linux/amd64]",
    model: bytes | None = None,
) -> Path:
    """Copy examples/hello-sensor to ``directory`` with the base, name and version replaced."""
    shutil.copytree(EXAMPLE, directory)
    spec = (directory / "ecr.yaml").read_text()
    spec = re.sub(r"(?m)^  base: .*$", f"  base: {base}", spec)
    spec = re.sub(r"(?m)^  name: .*$", f"  name: {name}", spec)
    spec = re.sub(r"(?m)^  version: .*$", f"  version: {version}", spec)
    if platforms is None:
        spec = re.sub(r"(?m)^  platforms: .*\n", "", spec)
    else:
        spec = re.sub(r"(?m)^  platforms: .*$", f"  platforms: {platforms}", spec)
    (directory / "ecr.yaml").write_text(spec)
    if model is not None:
        (directory / "model" / "weights.bin").write_bytes(model)
    return directory


def set_version(directory: Path, version: str) -> None:
    path = directory / "ecr.yaml"
    path.write_text(re.sub(r"(?m)^  version: .*$", f"  version: {version}", path.read_text()))


Runner = Callable[..., subprocess.CompletedProcess[str]]


def make_runner(home: Path) -> Runner:
    """Run ``ecr-oci ARGS`` as a real process with a private HOME and cache."""
    env = {**os.environ, "XDG_CACHE_HOME": str(home / "cache"), "HOME": str(home)}
    env.pop("SOURCE_DATE_EPOCH", None)

    def run(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "ecr_oci", *args], capture_output=True, text=True, env=env,
            timeout=300, check=False, **kwargs,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"ecr-oci {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    return run


@pytest.fixture
def ecr(tmp_path: Path) -> Runner:
    return make_runner(tmp_path / "home")


@pytest.fixture(scope="module")
def ecr_module(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return make_runner(tmp_path_factory.mktemp("home"))


def push_json(ecr: Runner, directory: Path,
              host: str, *extra: str) -> dict[str, Any]:
    done = ecr("push", str(directory), "--registry", host, "--insecure", "--json", *extra)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
