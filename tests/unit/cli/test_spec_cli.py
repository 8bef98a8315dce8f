"""``ecr-oci validate`` and ``ecr-oci init`` through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ecr_oci.bundle.spec_loader import load_spec
from ecr_oci.bundle.starter import default_name
from ecr_oci.cli.main import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_init_then_validate(tmp_path: Path) -> None:
    directory = tmp_path / "hello-sensor"
    result = run("init", str(directory))
    assert result.exit_code == 0, result.output
    assert f"wrote {directory / 'ecr.yaml'}" in result.output
    assert f"wrote {directory / 'src' / 'run.sh'}" in result.output
    assert f"ecr-oci validate {directory}" in result.output

    result = run("validate", str(directory))
    assert result.exit_code == 0, result.output
    assert result.output == "ok: waggle/hello-sensor 0.1.0 (1 input, code src → /app)\n"


def test_validate_names_model_and_counts_inputs(tmp_path: Path) -> None:
    run("init", str(tmp_path / "p"), "--namespace", "team", "--name", "det")
    spec_path = tmp_path / "p" / "ecr.yaml"
    text = spec_path.read_text().replace("# model:\n#   path: model\n", "model:\n  path: model\n")
    text = text.replace("inputs:\n", "inputs:\n  - {id: fps, type: float, default: 1.5}\n")
    spec_path.write_text(text)
    (tmp_path / "p" / "model").mkdir()
    result = run("validate", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert result.output == ("ok: team/det 0.1.0 (2 inputs, code src → /app, model model → /models)\n")


def test_validate_json_prints_the_normalised_spec(tmp_path: Path) -> None:
    run("init", str(tmp_path / "hello"))
    result = run("validate", str(tmp_path / "hello"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == load_spec(tmp_path / "hello").spec.to_json()
    assert data["apiVersion"] == "ecr.waggle-sensor.org/v1"
    assert data["metadata"]["name"] == "hello"


def test_validate_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    run("init", str(tmp_path / "hello"))
    spec_path = tmp_path / "hello" / "ecr.yaml"
    spec_path.write_text(spec_path.read_text().replace("version: 0.1.0", "version: one"))
    result = run("validate", str(tmp_path / "hello"))
    assert result.exit_code == 2
    assert result.stdout == ""
    line = next(n for n, text in enumerate(spec_path.read_text().splitlines(), 1) if "version: one" in text)
    assert result.stderr.startswith(f"error: {spec_path}:{line}: metadata.version: 'one' is not")
    assert "such as 0.1.0" in result.stderr
    assert result.stderr.count("\n") == 1


def test_validate_missing_directory_suggests_init(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nothing"))
    assert result.exit_code == 2
    assert "ecr-oci init" in result.stderr


def test_init_refuses_existing_spec(tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "hello")).exit_code == 0
    result = run("init", str(tmp_path / "hello"))
    assert result.exit_code == 2
    assert "already exists" in result.stderr


def test_init_name_defaults_to_cleaned_directory_name(tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "My Plugin_v2"))
    assert result.exit_code == 0, result.output
    spec = load_spec(tmp_path / "My Plugin_v2", git=False).spec
    assert (spec.metadata.namespace, spec.metadata.name) == ("waggle", "my-plugin-v2")


def test_init_with_bad_name_exits_2(tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "x"), "--name", "Bad Name")
    assert result.exit_code == 2
    assert "metadata.name" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("directory", "name"),
    [("hello", "hello"), ("Hello World", "hello-world"), ("__x__y__", "x-y"),
     ("a" * 80, "a" * 64), ("cam.v2", "cam-v2")],
)  # fmt: skip
def test_default_name(tmp_path: Path, directory: str, name: str) -> None:
    assert default_name(tmp_path / directory) == name


def test_default_name_needs_something_left(tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "_"))
    assert result.exit_code == 2
    assert "pass --name" in result.stderr


@pytest.mark.parametrize("command", ["validate", "init"])
def test_help_has_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"ecr-oci {command}" in result.output
