"""``ecr.yaml``: the model, the loader, and every class of error with its file, line and field."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from ecr_oci.bundle.spec import BundleSpec, Source, check_platform
from ecr_oci.bundle.spec_license import normalize_license
from ecr_oci.bundle.spec_loader import (
    MAX_SPEC_BYTES,
    LoadedSpec,
    clean_remote_url,
    git_source,
    load_spec,
)
from ecr_oci.digest import Digest
from ecr_oci.errors import BundleSpecError
from ecr_oci.oci.models import Platform

# Line numbers matter: the error tests below name the line each key is on.
GOOD = """\
apiVersion: ecr.waggle-sensor.org/v1
kind: Bundle
metadata:
  namespace: waggle
  name: hello-sensor
  version: 0.1.0
  description: Says hello
  authors:
    - name: Ada Lovelace
      email: ada@example.org
      orcid: 0000-0002-1825-0097
  license: MIT
  keywords: [example]
  homepage: https://example.org/hello
runtime:
  base: 127.0.0.1:5000/base/busybox:1.36
  platforms: [linux/amd64, linux/arm/v7]
  entrypoint: ["/bin/sh", "/app/run.sh"]
  cmd: []
  env: {GREETING: hello}
  workdir: /app
  requirements: ["opencv"]
  resources: {cpu: "1", memory: 512Mi, gpu: none}
inputs:
  - id: interval
    type: int
    default: 30
    description: Seconds between readings
code: {path: src, target: /app, exclude: ["*.pyc"], compression: gzip}
model: {path: model, target: /models, framework: onnx, format: onnx, compression: auto}
data: {path: data, description: samples}
profile: {path: profile.json}
"""


def make_bundle(root: Path, text: str = GOOD) -> Path:
    """A bundle directory with every path GOOD references."""
    directory = root / "hello"
    (directory / "src").mkdir(parents=True)
    (directory / "src" / "run.sh").write_text("echo hello\n")
    (directory / "model").mkdir()
    (directory / "model" / "weights.bin").write_bytes(b"\0" * 16)
    (directory / "data").mkdir()
    (directory / "profile.json").write_text('{"measures": {"wall_s": 1.5}}\n')
    (directory / "ecr.yaml").write_text(text)
    return directory


def replaced(old: str, new: str, text: str = GOOD) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once in the test spec"
    return text.replace(old, new)


def rm_rf(*paths: Path) -> None:
    """``rm -rf``: a referenced path may be a directory or a file."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def load_error(directory: Path) -> BundleSpecError:
    with pytest.raises(BundleSpecError) as info:
        load_spec(directory, git=False)
    return info.value


def assert_names(err: BundleSpecError, directory: Path, line: int | None, field: str | None) -> None:
    """The message names the file, the line and the field, in the ``file:line: field:`` form."""
    path = str(directory / "ecr.yaml")
    assert (err.file, err.line, err.field) == (path, line, field), str(err)
    where = f"{path}:{line}" if line is not None else path
    assert str(err).startswith(f"{where}: {field}: " if field else f"{where}: "), str(err)


# --- the good spec ----------------------------------------------------------------------------


def test_good_spec_loads_with_every_field(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    loaded = load_spec(directory, git=False)
    spec = loaded.spec
    assert isinstance(loaded, LoadedSpec)
    assert loaded.path == directory / "ecr.yaml"
    assert loaded.raw == GOOD.encode()
    assert loaded.ecr_yaml_digest == Digest.of(GOOD.encode())
    assert loaded.resolve(spec.code.path) == directory / "src"
    assert spec.repository == "waggle/hello-sensor"
    assert spec.metadata.version == "0.1.0"
    assert spec.metadata.authors[0].orcid == "0000-0002-1825-0097"
    assert spec.runtime.platforms == ["linux/amd64", "linux/arm/v7"]
    assert spec.platform_list() == [
        Platform(os="linux", architecture="amd64"),
        Platform(os="linux", architecture="arm", variant="v7"),
    ]
    assert spec.runtime.resources.gpu == "none"
    assert spec.inputs[0].env_name == "INTERVAL"
    assert (spec.code.target, spec.code.compression) == ("/app", "gzip")
    assert spec.model is not None and spec.model.compression == "auto"
    assert spec.data is not None and spec.profile is not None
    assert spec.metadata.source is None  # git=False


def test_to_json_uses_yaml_names_and_round_trips(tmp_path: Path) -> None:
    spec = load_spec(make_bundle(tmp_path), git=False).spec
    data = spec.to_json()
    assert data["apiVersion"] == "ecr.waggle-sensor.org/v1"
    assert "api_version" not in data
    assert data["runtime"]["platforms"] == ["linux/amd64", "linux/arm/v7"]
    assert BundleSpec.model_validate(data) == spec
    assert BundleSpec.model_validate_json(json.dumps(data)) == spec


def test_defaults_for_optional_sections(tmp_path: Path) -> None:
    text = """\
apiVersion: ecr.waggle-sensor.org/v1
kind: Bundle
metadata: {namespace: waggle, name: tiny, version: 1.0.0-rc.1, description: x}
runtime: {base: "127.0.0.1:5000/base/busybox:1.36", entrypoint: [/app/run]}
code: {path: src}
"""
    spec = load_spec(make_bundle(tmp_path, text), git=False).spec
    assert spec.platform_list() is None  # every platform of the base
    assert (spec.code.target, spec.code.exclude, spec.code.compression) == ("/app", [], "gzip")
    assert spec.model is None and spec.data is None and spec.profile is None
    assert spec.inputs == [] and spec.runtime.cmd == [] and spec.runtime.env == {}
    assert spec.runtime.workdir is None and spec.metadata.license is None


def test_license_is_stored_in_canonical_form(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced("license: MIT", "license: mit or eupl-1.2"))
    assert load_spec(directory, git=False).spec.metadata.license == "MIT OR EUPL-1.2"


def test_numbers_for_cpu_become_quantity_text(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced('cpu: "1"', "cpu: 0.5"))
    assert load_spec(directory, git=False).spec.runtime.resources.cpu == "0.5"


def test_float_input_accepts_an_int_default(tmp_path: Path) -> None:
    text = replaced("type: int\n    default: 30", "type: float\n    default: 30")
    assert load_spec(make_bundle(tmp_path, text), git=False).spec.inputs[0].default == 30.0


def test_paths_are_normalised(tmp_path: Path) -> None:
    text = replaced("{path: src, target: /app,", "{path: ./src/, target: /app/,")
    spec = load_spec(make_bundle(tmp_path, text), git=False).spec
    assert (spec.code.path, spec.code.target) == ("src", "/app")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    (directory / "ecr.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_spec(directory, git=False).spec.metadata.name == "hello-sensor"


# --- value checks, unit level -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("MIT", "MIT"),
        ("mit", "MIT"),
        ("apache-2.0 OR MIT", "Apache-2.0 OR MIT"),
        ("(MIT OR Apache-2.0) AND BSD-3-Clause", "(MIT OR Apache-2.0) AND BSD-3-Clause"),
        ("GPL-2.0-only WITH Classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"),
        ("gpl-2.0-or-later with llvm-exception", "GPL-2.0-or-later WITH LLVM-exception"),
        ("LicenseRef-Waggle-Model-Terms", "LicenseRef-Waggle-Model-Terms"),
        ("DocumentRef-spdx-tool:LicenseRef-Weights", "DocumentRef-spdx-tool:LicenseRef-Weights"),
        ("MIT AND LicenseRef-Weights", "MIT AND LicenseRef-Weights"),
        ("  MIT   AND  ISC ", "MIT AND ISC"),
        # lower-case operators are upper-cased like ids are (PEP 639 tools do the same)
        ("MIT or Apache-2.0", "MIT OR Apache-2.0"),
        ("mit or isc and zlib", "MIT OR (ISC AND Zlib)"),
        # from the SPDX index the library ships, not only a list of common ones
        ("EUPL-1.2", "EUPL-1.2"),
        ("sendmail", "Sendmail"),
        ("CERN-OHL-S-2.0 OR bsd-3-clause", "CERN-OHL-S-2.0 OR BSD-3-Clause"),
    ],
)
def test_license_expressions_accepted(text: str, normal: str) -> None:
    assert normalize_license(text) == normal


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Apache2", "'Apache2' is not a current SPDX license id; use Apache-2.0"),
        ("Apache 2.0", "use Apache-2.0"),
        ("GPL-3.0", "not a current SPDX license id; use GPL-3.0-only or GPL-3.0-or-later"),
        ("MIT AND GPL-2.0+", "'GPL-2.0+' is not a current SPDX license id; use GPL-2.0-or-later"),
        ("MyLicense", "'MyLicense' is not an SPDX license id"),
        ("MyLicense", "or LicenseRef-MyLicense for a license"),
        ("LicenseRef-my license", "or LicenseRef-my-license for a license"),
        ("Apache-2.0+", "write Apache-2.0 without '+'"),
        ("MIT AND", "AND requires two or more licenses"),
        ("(MIT", "check the parentheses"),
        ("MIT)", "Unbalanced parenthesis"),
        ("MIT ISC", "not a valid SPDX expression"),
        ("MIT AND ()", "not a valid SPDX expression"),  # the library's IndexError, caught
        ("( AND MIT", "not a valid SPDX expression"),  # the library's AssertionError, caught
        ("MIT WITH Nonsense-exception", "'Nonsense-exception' is not an SPDX license exception"),
        ("MIT WITH Apache-2.0", "'Apache-2.0' is not an SPDX license exception"),
        ("Classpath-exception-2.0", "it goes after WITH, as in GPL-2.0-only WITH Classpath-exception-2.0"),
        ("MIT, Apache-2.0", "the valid characters are"),
        ("", "license is empty"),
        ("   ", "license is empty"),
    ],
)
def test_license_expressions_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_license(text)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://me:s3cret@example.org/r", "'https://example.org/r'"),
        ("https://me:s3cret@[::1]:8443/r?token=t0k", "'https://[::1]:8443/r?token=REDACTED'"),
    ],
)
def test_url_with_credentials_is_refused_without_echoing_them(url: str, shown: str) -> None:
    with pytest.raises(ValidationError) as info:
        Source(url=url)
    message = info.value.errors()[0]["msg"]  # what load_spec shows; pydantic's repr has the input
    assert f"{shown} contains credentials" in message
    assert "s3cret" not in message and "t0k" not in message


@pytest.mark.parametrize("text", ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm64/v8"])
def test_platforms_accepted(text: str) -> None:
    assert check_platform(text) == text
    assert str(Platform.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("linux", "not os/architecture[/variant]"),
        ("linux/amd64/v8/x", "not os/architecture[/variant]"),
        ("linux//v7", "not os/architecture[/variant]"),
        ("plan9/amd64", "unknown os 'plan9'"),
        ("linux/x86_64", "write linux/amd64"),
        ("linux/aarch64", "write linux/arm64"),
        ("linux/sparc", "Go GOARCH names"),
        ("linux/arm/7", "not like v7"),
    ],
)
def test_platforms_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        check_platform(text)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/waggle-sensor/p.git", "https://github.com/waggle-sensor/p.git"),
        (
            "https://user:tok3n@github.com/waggle-sensor/p.git",
            "https://github.com/waggle-sensor/p.git",
        ),
        ("https://tok3n@gitlab.example.org:8443/g/p", "https://gitlab.example.org:8443/g/p"),
        ("http://git.local/p.git?private_token=x#f", "http://git.local/p.git"),
        ("git@github.com:waggle-sensor/p.git", "https://github.com/waggle-sensor/p.git"),
        ("ssh://git@github.com:22/waggle-sensor/p.git", "https://github.com/waggle-sensor/p.git"),
        ("git://example.org/p.git", "https://example.org/p.git"),
        ("/srv/git/p.git", None),
        ("../p.git", None),
        ("file:///srv/git/p.git", None),
    ],
)
def test_clean_remote_url(remote: str, url: str | None) -> None:
    assert clean_remote_url(remote) == url


# --- every error class, with file, line and field ---------------------------------------------

# fmt: off
ERRORS = [
    # (id, old, new, line, field, message fragment)
    # wrong types
    ("version-float", "version: 0.1.0", "version: 1.0", 6, "metadata.version", 'quotes: "1.0"'),
    ("namespace-int", "namespace: waggle", "namespace: 123", 4, "metadata.namespace", "as an int"),
    ("authors-str",
     "  authors:\n    - name: Ada Lovelace\n      email: ada@example.org\n"
     "      orcid: 0000-0002-1825-0097\n",
     "  authors: Ada\n", 8, "metadata.authors", "expected a list"),
    ("metadata-list", "metadata:\n", "metadata: [a]\nmetadatx:\n", 3, "metadata",
     "expected a mapping"),
    ("entrypoint-str", '["/bin/sh", "/app/run.sh"]', "/bin/sh", 18, "runtime.entrypoint",
     "expected a list"),
    ("env-bool", "{GREETING: hello}", "{GREETING: yes}", 20, "runtime.env.GREETING",
     'reads yes as a bool; put the value in quotes: "yes"'),
    ("gpu-literal", "gpu: none", "gpu: maybe", 23, "runtime.resources.gpu",
     "must be 'none', 'optional' or 'required', got 'maybe'"),
    ("gpu-yaml-bool", "gpu: none", "gpu: yes", 23, "runtime.resources.gpu",
     "got yes (which YAML reads as True)"),
    ("code-str", 'code: {path: src, target: /app, exclude: ["*.pyc"], compression: gzip}',
     "code: src", 29, "code", "expected a mapping"),
    ("platforms-str", "platforms: [linux/amd64, linux/arm/v7]", "platforms: linux/amd64", 17,
     "runtime.platforms", "expected a list"),
    ("input-type", "type: int", "type: integer", 26, "inputs[0].type",
     "must be 'int', 'float', 'str' or 'bool', got 'integer'"),
    ("input-default-quoted", "default: 30", "default: '30'", 27, "inputs[0].default",
     "without quotes"),
    ("input-default-bool", "default: 30", "default: true", 27, "inputs[0].default",
     "is not of type int"),
    ("input-id", "id: interval", "id: Interval!", 25, "inputs[0].id", "is not an input id"),
    ("cpu", 'cpu: "1"', 'cpu: "1 core"', 23, "runtime.resources.cpu", "not a CPU quantity"),
    ("memory", "memory: 512Mi", "memory: lots", 23, "runtime.resources.memory",
     "not a memory quantity"),
    ("keyword-empty", "keywords: [example]", 'keywords: [""]', 13, "metadata.keywords[0]",
     "must not be empty"),
    # unknown keys, top level, nested, in a list item
    ("unknown-top", "profile: {path: profile.json}\n",
     "profile: {path: profile.json}\ncolour: red\n", 33, "colour",
     "unknown key 'colour'; allowed here: apiVersion, kind, metadata"),
    ("unknown-nested", "  license: MIT", "  licence: MIT", 12, "metadata.licence",
     "did you mean 'license'?"),
    ("unknown-deep", "gpu: none}", "gpu: none, disk: 1Gi}", 23, "runtime.resources.disk",
     "allowed here: cpu, memory, gpu"),
    ("unknown-in-list", "    description: Seconds between readings",
     "    descripton: Seconds between readings", 28, "inputs[0].descripton",
     "did you mean 'description'?"),
    # missing required keys point at the parent
    ("missing-description", "  description: Says hello\n", "", 3, "metadata.description",
     "required key 'description' is missing"),
    ("missing-entrypoint", '  entrypoint: ["/bin/sh", "/app/run.sh"]\n', "", 15,
     "runtime.entrypoint", "required key 'entrypoint'"),
    ("missing-code", 'code: {path: src, target: /app, exclude: ["*.pyc"], compression: gzip}\n', "",
     1, "code", "required key 'code' is missing"),
    ("empty-entrypoint", '["/bin/sh", "/app/run.sh"]', "[]", 18, "runtime.entrypoint",
     "at least one item"),
    # identity
    ("api-version", "apiVersion: ecr.waggle-sensor.org/v1", "apiVersion: v1", 1, "apiVersion",
     "must be 'ecr.waggle-sensor.org/v1'"),
    ("kind", "kind: Bundle", "kind: Plugin", 2, "kind", "must be 'Bundle'"),
    # semver
    ("semver-short", "version: 0.1.0", "version: '1.0'", 6, "metadata.version",
     "use a semantic version such as 0.1.0"),
    ("semver-leading-zero", "version: 0.1.0", "version: 01.0.0", 6, "metadata.version",
     "use a semantic version such as 0.1.0"),
    ("semver-v", "version: 0.1.0", "version: v1.0.0", 6, "metadata.version",
     "not a semantic version"),
    ("semver-build", "version: 0.1.0", "version: 1.0.0+build.5", 6, "metadata.version",
     "an OCI tag cannot hold"),
    # names
    ("namespace-upper", "namespace: waggle", "namespace: Waggle", 4, "metadata.namespace",
     "lower-case letters"),
    ("name-short", "name: hello-sensor", "name: h", 5, "metadata.name", "2-64"),
    ("name-trailing", "name: hello-sensor", "name: hello_", 5, "metadata.name",
     "registry path component"),
    ("name-mixed-separators", "name: hello-sensor", "name: hello_-sensor", 5, "metadata.name",
     "registry path component"),
    ("name-leading-dash", "name: hello-sensor", "name: -hello", 5, "metadata.name",
     "starting with a letter or digit"),
    # people and links
    ("email", "email: ada@example.org", "email: ada-at-example", 10, "metadata.authors[0].email",
     "not an e-mail address"),
    ("orcid-format", "orcid: 0000-0002-1825-0097", "orcid: https://orcid.org/0000-0002-1825-0097",
     11, "metadata.authors[0].orcid", "not an ORCID iD"),
    ("orcid-checksum", "orcid: 0000-0002-1825-0097", "orcid: 0000-0002-1825-0098", 11,
     "metadata.authors[0].orcid", "check digit does not match"),
    ("license", "license: MIT", "license: Apache2", 12, "metadata.license", "use Apache-2.0"),
    ("license-deprecated", "license: MIT", "license: MIT OR GPL-3.0", 12, "metadata.license",
     "use GPL-3.0-only or GPL-3.0-or-later"),
    ("homepage-scheme", "homepage: https://example.org/hello", "homepage: ftp://example.org", 14,
     "metadata.homepage", "not an http(s) URL"),
    ("source-credentials", "  homepage: https://example.org/hello",
     "  homepage: https://example.org/hello\n  source: {url: 'https://me:s3cret@example.org/r'}",
     15, "metadata.source.url", "contains credentials"),
    ("source-commit", "  homepage: https://example.org/hello",
     "  homepage: https://example.org/hello\n  source: {commit: abc123}", 15,
     "metadata.source.commit", "not a full git commit id"),
    # runtime
    ("base-no-host", "base: 127.0.0.1:5000/base/busybox:1.36", "base: busybox", 16, "runtime.base",
     "must start with a registry host"),
    ("base-upper", "base: 127.0.0.1:5000/base/busybox:1.36",
     "base: 127.0.0.1:5000/Base/busybox:1.36", 16, "runtime.base", "invalid repository"),
    ("platform-arch", "[linux/amd64, linux/arm/v7]", "[linux/x86_64]", 17, "runtime.platforms[0]",
     "write linux/amd64"),
    ("platform-shape", "[linux/amd64, linux/arm/v7]", "[linux/amd64, amd64]", 17,
     "runtime.platforms[1]", "not os/architecture"),
    ("platform-twice", "[linux/amd64, linux/arm/v7]", "[linux/amd64, linux/amd64]", 17,
     "runtime.platforms", "listed twice"),
    ("platforms-empty", "[linux/amd64, linux/arm/v7]", "[]", 17, "runtime.platforms",
     "at least one platform"),
    ("env-key", "{GREETING: hello}", "{2FAST: hello}", 20, "runtime.env",
     "not an environment variable name"),
    ("workdir-relative", "workdir: /app", "workdir: app", 21, "runtime.workdir",
     "must be an absolute path"),
    # inputs
    ("inputs-duplicate", "    description: Seconds between readings\n",
     "    description: Seconds between readings\n  - {id: interval, type: str}\n", 24, "inputs",
     "used twice"),
    # paths
    ("code-path-absolute", "{path: src,", "{path: /etc,", 29, "code.path", "not absolute"),
    ("code-path-dotdot", "{path: src,", "{path: ../src,", 29, "code.path",
     "leaves the bundle directory"),
    ("data-path-dotdot-inside", "{path: data,", "{path: data/../../x,", 31, "data.path",
     "leaves the bundle directory"),
    ("model-path-backslash", "{path: model,", "{path: 'model\\weights',", 30, "model.path",
     "POSIX"),
    ("code-target-relative", "target: /app,", "target: app,", 29, "code.target",
     "absolute path in the image"),
    ("code-target-dotdot", "target: /app,", "target: /app/../etc,", 29, "code.target",
     "without '..'"),
    ("code-target-root", "target: /app,", "target: /,", 29, "code.target", "base image's root"),
    ("model-target-same", "target: /models,", "target: /app,", 30, "model",
     "give the model its own folder"),
    ("code-compression", "compression: gzip}", "compression: xz}", 29, "code.compression",
     "must be 'gzip' or 'zstd'"),
    ("model-compression", "compression: auto}", "compression: lz4}", 30, "model.compression",
     "'auto', 'none', 'gzip' or 'zstd'"),
]
# fmt: on


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "says"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_spec_error(tmp_path: Path, old: str, new: str, line: int, field: str, says: str) -> None:
    directory = make_bundle(tmp_path, replaced(old, new))
    err = load_error(directory)
    assert_names(err, directory, line, field)
    assert says in err.message
    assert err.exit_code == 2


def test_first_error_in_file_order_with_count_of_others(tmp_path: Path) -> None:
    text = replaced("gpu: none", "gpu: maybe", replaced("name: hello-sensor", "name: X"))
    text = replaced("license: MIT", "license: Apache2", text)
    directory = make_bundle(tmp_path, text)
    err = load_error(directory)
    assert_names(err, directory, 5, "metadata.name")
    assert err.message.endswith("(and 2 more errors)")


def test_one_other_error_is_singular(tmp_path: Path) -> None:
    text = replaced("gpu: none", "gpu: maybe", replaced("name: hello-sensor", "name: X"))
    err = load_error(make_bundle(tmp_path, text))
    assert err.message.endswith("(and 1 more error)")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced("kind: Bundle", "kind: [Bundle"))
    err = load_error(directory)
    assert_names(err, directory, 3, None)
    assert "YAML syntax error" in err.message


def test_yaml_bad_indentation(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced("  name: hello-sensor", "   name: hello-sensor"))
    err = load_error(directory)
    assert "YAML syntax error" in err.message
    assert err.line == 5


def test_two_documents_are_an_error(tmp_path: Path) -> None:
    err = load_error(make_bundle(tmp_path, GOOD + "---\nkind: Bundle\n"))
    assert "YAML syntax error" in err.message and "single document" in err.message


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced("  license: MIT", "  license: MIT\n  version: 0.2.0"))
    err = load_error(directory)
    assert_names(err, directory, 13, "metadata.version")
    assert "appears twice (first on line 6)" in err.message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- a\n- b\n", "it is a list"),
        ("just text\n", "it is a str"),
        ("", "it is empty"),
        ("# only a comment\n", "it is empty"),
    ],
)
def test_not_a_mapping(tmp_path: Path, text: str, says: str) -> None:
    directory = make_bundle(tmp_path, text)
    err = load_error(directory)
    assert_names(err, directory, 1, None)
    assert says in err.message and "must be a mapping" in err.message


def test_not_utf8(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    (directory / "ecr.yaml").write_bytes(GOOD.encode().replace(b"Says hello", b"Says h\xe9llo"))
    err = load_error(directory)
    assert_names(err, directory, 7, None)
    assert "UTF-8" in err.message


def test_missing_ecr_yaml_says_how_to_fix(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    err = load_error(directory)
    assert_names(err, directory, None, None)
    assert f"ecr-oci init {directory}" in err.message


def test_missing_directory(tmp_path: Path) -> None:
    err = load_error(tmp_path / "nowhere")
    assert err.file == str(tmp_path / "nowhere")
    assert "does not exist" in err.message and "ecr-oci init" in err.message


def test_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    err = load_error(tmp_path / "file")
    assert "not a directory" in err.message


def test_ecr_yaml_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "ecr.yaml").mkdir()
    err = load_error(tmp_path)
    assert_names(err, tmp_path, None, None)
    assert "regular file" in err.message


def test_oversize_file_refused(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, GOOD + "#" * (MAX_SPEC_BYTES - len(GOOD)) + "\n")
    err = load_error(directory)
    assert_names(err, directory, None, None)
    assert "larger than 1024 KiB" in err.message


def test_oversize_file_is_not_read(tmp_path: Path) -> None:
    # A sparse 64 GiB file: refusing it from its size is instant; reading it would not be.
    directory = make_bundle(tmp_path)
    with (directory / "ecr.yaml").open("r+b") as handle:
        handle.truncate(64 * 2**30)
    err = load_error(directory)
    assert "larger than" in err.message


def test_exactly_the_limit_is_fine(tmp_path: Path) -> None:
    padding = MAX_SPEC_BYTES - len(GOOD.encode()) - 1
    directory = make_bundle(tmp_path, GOOD + "#" * padding + "\n")
    assert (directory / "ecr.yaml").stat().st_size == MAX_SPEC_BYTES
    assert load_spec(directory, git=False).spec.metadata.name == "hello-sensor"


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    err = load_error(make_bundle(tmp_path, "a: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    assert "nested too deeply" in err.message


def test_alias_bomb_stays_cheap(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.monotonic()
    err = load_error(make_bundle(tmp_path, "\n".join(lines) + "\n"))
    assert time.monotonic() - started < 5  # 10**9 strings if the aliases were expanded
    assert err.line == 1 and "(and 13 more errors)" in err.message


# --- referenced paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remove", "line", "field"),
    [("src", 29, "code.path"), ("model", 30, "model.path"), ("data", 31, "data.path"),
     ("profile.json", 32, "profile.path")],
)  # fmt: skip
def test_missing_paths(tmp_path: Path, remove: str, line: int, field: str) -> None:
    directory = make_bundle(tmp_path)
    target = directory / remove
    rm_rf(target)
    err = load_error(directory)
    assert_names(err, directory, line, field)
    assert f"{remove!r} does not exist in {directory}" in err.message


def test_several_missing_paths_report_the_first_with_a_count(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    rm_rf(directory / "src", directory / "data")
    err = load_error(directory)
    assert_names(err, directory, 29, "code.path")
    assert err.message.endswith("(and 1 more error)")


def test_symlink_escaping_the_directory(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    rm_rf(directory / "model")
    (directory / "model").symlink_to(outside)
    err = load_error(directory)
    assert_names(err, directory, 30, "model.path")
    assert "outside the bundle directory" in err.message and str(outside) in err.message


def test_symlink_parent_escaping_the_directory(tmp_path: Path) -> None:
    # code.path "lib/src" where "lib" links outside: resolving the whole path catches it.
    directory = make_bundle(tmp_path, replaced("{path: src,", "{path: lib/src,"))
    (tmp_path / "elsewhere" / "src").mkdir(parents=True)
    (directory / "lib").symlink_to(tmp_path / "elsewhere")
    err = load_error(directory)
    assert_names(err, directory, 29, "code.path")
    assert "outside the bundle directory" in err.message


def test_symlink_inside_the_directory_is_fine(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced("{path: data,", "{path: current,"))
    (directory / "current").symlink_to("data")
    assert load_spec(directory, git=False).spec.data is not None


def test_broken_symlink(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    rm_rf(directory / "src")
    (directory / "src").symlink_to(directory / "gone")
    err = load_error(directory)
    assert_names(err, directory, 29, "code.path")
    assert "broken symlink" in err.message


def test_code_path_that_is_a_fifo(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    rm_rf(directory / "src")
    os.mkfifo(directory / "src")
    err = load_error(directory)
    assert_names(err, directory, 29, "code.path")
    assert "directory or a regular file" in err.message


def test_profile_must_be_a_file(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path, replaced("{path: profile.json}", "{path: data}"))
    err = load_error(directory)
    assert_names(err, directory, 32, "profile.path")
    assert "must be a JSON file" in err.message


def test_bad_profile_json(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    (directory / "profile.json").write_text('{\n  "measures": {"wall_s": 1.5,}\n}\n')
    err = load_error(directory)
    assert_names(err, directory, 32, "profile.path")
    assert "'profile.json' is not valid JSON (line 2 column" in err.message


def test_profile_json_must_be_an_object(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    (directory / "profile.json").write_text("[1, 2]\n")
    err = load_error(directory)
    assert_names(err, directory, 32, "profile.path")
    assert "must hold a JSON object" in err.message


# --- source from git --------------------------------------------------------------------------


def git(directory: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(directory), "-c", "user.name=T", "-c", "user.email=t@example.org",
         "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree holding the bundle at ``plugins/hello``, committed, with a remote."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    directory = make_bundle(root / "plugins")
    git(root, "remote", "add", "origin", "https://bot:t0ken@github.com/waggle-sensor/hello.git")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return directory


def test_source_filled_from_git(repo: Path) -> None:
    source = load_spec(repo).spec.metadata.source
    assert source is not None
    assert source.commit == git(repo, "rev-parse", "HEAD")
    assert source.url == "https://github.com/waggle-sensor/hello.git"  # token stripped
    assert source.dirty is False


def test_source_commit_is_the_last_one_that_changed_the_bundle(repo: Path) -> None:
    bundle_commit = git(repo, "rev-parse", "HEAD")
    (repo.parent.parent / "README.md").write_text("another plugin's change\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "unrelated")
    source = load_spec(repo).spec.metadata.source
    assert source is not None and source.commit == bundle_commit != git(repo, "rev-parse", "HEAD")


def test_dirty_when_files_under_the_bundle_changed(repo: Path) -> None:
    (repo / "src" / "run.sh").write_text("echo changed\n")
    source = load_spec(repo).spec.metadata.source
    assert source is not None and source.dirty is True


def test_untracked_files_make_it_dirty(repo: Path) -> None:
    (repo / "src" / "new.sh").write_text("echo new\n")
    source = git_source(repo)
    assert source is not None and source.dirty is True


def test_changes_outside_the_bundle_do_not_make_it_dirty(repo: Path) -> None:
    (repo.parent.parent / "README").write_text("other\n")
    source = git_source(repo)
    assert source is not None and source.dirty is False


def test_no_remote_leaves_url_empty(repo: Path) -> None:
    git(repo, "remote", "remove", "origin")
    source = load_spec(repo).spec.metadata.source
    assert source is not None and source.url is None and source.commit is not None


def test_declared_source_is_kept_and_completed(repo: Path) -> None:
    text = replaced(
        "  homepage: https://example.org/hello",
        "  homepage: https://example.org/hello\n  source: {url: https://example.org/src.git}",
    )
    (repo / "ecr.yaml").write_text(text)
    source = load_spec(repo).spec.metadata.source
    assert source is not None
    assert source.url == "https://example.org/src.git"  # declared wins
    assert source.commit == git(repo, "rev-parse", "HEAD")  # missing commit filled
    assert source.dirty is True  # ecr.yaml changed since the commit


def test_fully_declared_source_is_not_touched(repo: Path) -> None:
    commit = "a" * 40
    text = replaced(
        "  homepage: https://example.org/hello",
        f"  homepage: https://example.org/hello\n  source: {{url: https://e.org/r, commit: {commit}}}",
    )
    (repo / "ecr.yaml").write_text(text)
    source = load_spec(repo).spec.metadata.source
    assert source is not None and (source.url, source.commit, source.dirty) == (
        "https://e.org/r",
        commit,
        None,
    )


def test_not_a_git_tree_leaves_source_empty(tmp_path: Path) -> None:
    directory = make_bundle(tmp_path)
    assert git_source(directory) is None
    assert load_spec(directory).spec.metadata.source is None


def test_repo_without_commits_leaves_source_empty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    directory = make_bundle(tmp_path)
    assert git_source(directory) is None


def test_git_false_skips_git(repo: Path) -> None:
    assert load_spec(repo, git=False).spec.metadata.source is None
