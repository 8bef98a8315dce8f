"""Helpers for the integration tests: a client and a repository of the test's own on the session
registry, a copy of the example bundle aimed at the test registry, and the ``ecr-oci`` command run as
a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ecr_oci.devenv import LocalRegistry
from ecr_oci.oci.registry import RegistryClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-sensor"


@pytest.fixture
def client(registry: LocalRegistry) -> Iterator[RegistryClient]:
    """A plain-HTTP client of the session ``registry``, closed after the test."""
    with RegistryClient(registry.host, insecure=True) as made:
        yield made


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name of the test's own: ``<module>/<test name>-<random>``.

    ``test_signing.py::test_x[a]`` → ``signing/test-x-a-1a2b3c4d``, so tests share the session
    registry without seeing each other's tags.
    """
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    name = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    return f"{module}/{name[:50].strip('-')}-{uuid.uuid4().hex[:8]}"


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


def make_runner(home: Path, *, env: Mapping[str, str] | None = None) -> Runner:
    """Run ``ecr-oci ARGS`` as a real process with a private HOME and cache, plus ``env``.

    ``env`` adds variables (``COSIGN_PASSWORD`` for the signing commands); ``ARGS`` may be followed
    by keywords of :func:`subprocess.run` (``cwd=…``) and ``check=False`` to see a failure.
    """
    environ = {**os.environ, "XDG_CACHE_HOME": str(home / "cache"), "HOME": str(home), **(env or {})}
    environ.pop("SOURCE_DATE_EPOCH", None)

    def run(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "ecr_oci", *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=300,
            check=False,
            **kwargs,
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


def push_json(ecr: Runner, directory: Path, host: str, *extra: str) -> dict[str, Any]:
    done = ecr("push", str(directory), "--registry", host, "--insecure", "--json", *extra)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
