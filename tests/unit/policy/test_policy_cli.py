"""``ecr-oci policy render`` through click's test runner: stdout, ``-o DIR``, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ecr_oci.cli.main import cli
from ecr_oci.policy import render_policy


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "cosign.pub"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def render_args(key: Path, fmt: str, *extra: str) -> list[str]:
    return [
        "policy", "render", "--key", str(key), "--registry", "127.0.0.1:5000",
        "--deployment", "sage-prod", "--format", fmt, *extra,
    ]  # fmt: skip


def test_one_file_goes_to_stdout(key: Path) -> None:
    for fmt, name in (("kyverno", "clusterpolicy.yaml"), ("policy-controller", "clusterimagepolicy.yaml")):
        result = run(*render_args(key, fmt))
        assert result.exit_code == 0, result.output
        expected = render_policy(
            fmt,  # type: ignore[arg-type]
            public_key_pem=key.read_bytes(),
            registry="127.0.0.1:5000",
            deployment="sage-prod",
        )[name]
        assert result.stdout == expected.decode()
        assert result.stderr == ""


def test_output_directory_gets_every_file(key: Path, tmp_path: Path) -> None:
    out = tmp_path / "etc-containers"
    result = run(*render_args(key, "containers", "-o", str(out)))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote {out / 'policy.json'}",
        f"wrote {out / 'registries.d' / 'ecr.yaml'}",
    ]
    assert yaml.safe_load((out / "registries.d" / "ecr.yaml").read_text()) == {
        "docker": {"127.0.0.1:5000": {"use-sigstore-attachments": True}}
    }
    # Re-rendering replaces the files.
    assert run(*render_args(key, "containers", "-o", str(out))).exit_code == 0


def test_name_option(key: Path) -> None:
    result = run(*render_args(key, "kyverno", "--name", "sage-prod-images"))
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "sage-prod-images"


def one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_containers_without_output_directory(key: Path) -> None:
    one_line_error(run(*render_args(key, "containers")), "renders 2 files", "-o DIR")


def test_bad_keys(key: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key\n")
    one_line_error(run(*render_args(garbage, "kyverno")), str(garbage), "not a PEM file")

    rsa_key = tmp_path / "rsa.pub"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    one_line_error(run(*render_args(rsa_key, "kyverno")), str(rsa_key), "ECDSA P-256")

    one_line_error(run(*render_args(tmp_path / "missing.pub", "kyverno")), "cannot read the key file")


def test_bad_registry_and_deployment(key: Path) -> None:
    args = render_args(key, "kyverno")
    bad_registry = [*args[:5], "https://ecr.example.org", *args[6:]]
    one_line_error(run(*bad_registry), "invalid registry 'https://ecr.example.org'")
    bad_deployment = [*args[:7], "sage prod", *args[8:]]
    one_line_error(run(*bad_deployment), "invalid deployment 'sage prod'")
