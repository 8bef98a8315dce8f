"""``write_starter``: a commented, valid starter bundle that never overwrites an author's file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ecr_oci.bundle.spec import BundleSpec
from ecr_oci.bundle.spec_loader import load_spec
from ecr_oci.bundle.starter import write_starter
from ecr_oci.errors import BundleSpecError


def test_starter_loads_cleanly(tmp_path: Path) -> None:
    directory = tmp_path / "hello"
    written = write_starter(directory, namespace="waggle", name="hello-sensor")
    assert written == [directory / "ecr.yaml", directory / "src" / "run.sh"]
    spec = load_spec(directory, git=False).spec
    assert spec.repository == "waggle/hello-sensor"
    assert spec.metadata.version == "0.1.0"
    assert spec.runtime.base == "127.0.0.1:5000/base/busybox:1.36"
    assert spec.runtime.entrypoint == ["/bin/sh", "/app/run.sh"]
    assert (spec.code.path, spec.code.target) == ("src", "/app")
    assert [i.id for i in spec.inputs] == ["interval"]
    assert spec.model is None and spec.data is None and spec.profile is None


def test_run_sh_is_executable_and_prints_hello_and_the_input(tmp_path: Path) -> None:
    write_starter(tmp_path / "hello", namespace="waggle", name="hello")
    run_sh = tmp_path / "hello" / "src" / "run.sh"
    assert run_sh.stat().st_mode & 0o111
    out = subprocess.run(["/bin/sh", str(run_sh)], capture_output=True, text=True, check=True)
    assert out.stdout == "hello from waggle/hello\ninterval=30\n"
    env = {"INTERVAL": "5", "GREETING": "hi", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["/bin/sh", str(run_sh)], capture_output=True, text=True, check=True,
                         env=env)  # fmt: skip
    assert out.stdout == "hi from waggle/hello\ninterval=5\n"


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        stack: list[Any] = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                names |= _field_names(kind)
            stack.extend(getattr(kind, "__args__", ()))
    return names


def test_every_field_is_in_the_starter_with_a_comment(tmp_path: Path) -> None:
    write_starter(tmp_path, namespace="waggle", name="hello")
    text = (tmp_path / "ecr.yaml").read_text()
    for name in _field_names(BundleSpec):
        assert re.search(rf"\b{re.escape(name)}\b", text), f"{name} is not in the starter"
    lines = text.splitlines()
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        previous = lines[number - 1].lstrip() if number else ""
        assert "#" in line or previous.startswith("#") or line.startswith("    "), (
            f"line {number + 1} has no comment: {line!r}"
        )


def test_optional_sections_are_valid_once_uncommented(tmp_path: Path) -> None:
    write_starter(tmp_path, namespace="waggle", name="hello")
    spec_path = tmp_path / "ecr.yaml"
    text = spec_path.read_text()
    for section in ("model", "data", "profile"):
        text = text.replace(f"# {section}:\n", f"{section}:\n")
    text = re.sub(r"(?m)^#(   \w+:)", r"\1", text)
    spec_path.write_text(text)
    (tmp_path / "model").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "profile.json").write_text("{}")
    spec = load_spec(tmp_path, git=False).spec
    assert spec.model is not None and spec.model.target == "/models"
    assert spec.data is not None and spec.profile is not None


def test_refuses_to_overwrite_ecr_yaml(tmp_path: Path) -> None:
    (tmp_path / "ecr.yaml").write_text("mine\n")
    with pytest.raises(BundleSpecError) as info:
        write_starter(tmp_path, namespace="waggle", name="hello")
    assert info.value.file == str(tmp_path / "ecr.yaml")
    assert "already exists" in str(info.value)
    assert (tmp_path / "ecr.yaml").read_text() == "mine\n"
    assert not (tmp_path / "src").exists()


def test_keeps_existing_code(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "run.sh").write_text("echo mine\n")
    assert write_starter(tmp_path, namespace="waggle", name="hello") == [tmp_path / "ecr.yaml"]
    assert (tmp_path / "src" / "run.sh").read_text() == "echo mine\n"


@pytest.mark.parametrize(
    ("namespace", "name", "field"),
    [("Waggle", "hello", "metadata.namespace"), ("waggle", "x", "metadata.name"),
     ("waggle", "hello_", "metadata.name")],
)  # fmt: skip
def test_refuses_invalid_names(tmp_path: Path, namespace: str, name: str, field: str) -> None:
    with pytest.raises(BundleSpecError) as info:
        write_starter(tmp_path / "new", namespace=namespace, name=name)
    assert info.value.field == field
    assert not (tmp_path / "new").exists()


def test_creates_nested_directories(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "hello"
    write_starter(directory, namespace="waggle", name="hello")
    assert load_spec(directory, git=False).spec.metadata.name == "hello"
