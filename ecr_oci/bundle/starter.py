"""A commented starter bundle for ``ecr-oci init``: ``ecr.yaml`` plus ``src/run.sh``.

    >>> from pathlib import Path
    >>> import tempfile
    >>> directory = Path(tempfile.mkdtemp()) / "hello"
    >>> written = write_starter(directory, namespace="waggle", name="hello")
    >>> [str(p.relative_to(directory)) for p in written]
    ['ecr.yaml', 'src/run.sh']

Why commented: the starter is the documentation an author reads first, so every key is explained
where it is written, and the optional sections (model, data, profile) are shown commented out.
The starter is valid as written (``tests/unit/bundle/test_starter.py`` loads it), so ``ecr-oci
init`` then ``ecr-oci push`` works before anything is edited.
"""

from __future__ import annotations

import re
from pathlib import Path

from ecr_oci.bundle.spec import check_name
from ecr_oci.bundle.spec_loader import SPEC_FILE
from ecr_oci.errors import BundleSpecError

STARTER_YAML = """\
# ecr.yaml: describes one bundle (one plugin version) for the Edge Code Repository.
# Check it with `ecr-oci validate .`; publish it with `ecr-oci push . --registry HOST:PORT`.
# Unknown keys are errors. Paths are relative to this folder.

apiVersion: ecr.waggle-sensor.org/v1  # format of this file; always this value for now
kind: Bundle                          # always Bundle

metadata:                             # who made it and what it is
  # namespace and name: 2-64 of a-z 0-9 - _, starting with a letter or digit;
  # the bundle is pushed as NAMESPACE/NAME
  namespace: {namespace}  # the owner: a user or a team
  name: {name}  # the plugin
  # semantic version MAJOR.MINOR.PATCH; it becomes the image tag, and a pushed version is
  # immutable: bump it for every change
  version: 0.1.0
  description: "Says hello and prints its interval input."  # one line: what it does
  # people: [{{name: Ada Lovelace, email: ada@example.org, orcid: 0000-0002-1825-0097}}]
  authors: []
  # SPDX expression: MIT, Apache-2.0, "MIT OR Apache-2.0", LicenseRef-<name>, ...
  license: MIT
  keywords: [example]                 # words people search for
  # homepage: https://github.com/you/plugin   # http(s) page about the plugin
  # where the code came from; omit it to fill it from git (commit, remote, dirty flag):
  # source: {{url: https://github.com/you/plugin, commit: <40 hex characters>}}

runtime:                              # how the container runs
  # base image, with its registry; the model and code layers go on top of it
  base: 127.0.0.1:5000/base/busybox:1.36
  # platforms: [linux/amd64, linux/arm64]  # os/arch[/variant]; omit: all the base offers
  entrypoint: ["/bin/sh", "/app/run.sh"]  # what the container starts (required)
  cmd: []                             # default arguments after the entrypoint
  env: {{GREETING: hello}}              # environment (values are text: quote numbers)
  workdir: /app                       # working directory in the container (absolute)
  requirements: []                    # runtime needs, for people: e.g. ["pytorch>=2.0"]
  # scheduling hints (Kubernetes quantities); gpu: none | optional | required
  resources: {{cpu: "1", memory: 64Mi, gpu: none}}

# plugin parameters, recorded with the bundle and in the image's labels; by convention the
# code reads each from the environment variable named ID in upper case (see src/run.sh)
inputs:
  - id: interval                      # lower-case id; read as $INTERVAL
    type: int                         # int | float | str | bool
    default: 30                       # must match the type
    description: "Seconds between two readings."

code:                                 # required: the code layer (small, changes often)
  path: src                           # folder in this directory
  target: /app                        # where it appears in the container
  exclude: ["*.pyc", "__pycache__"]   # glob patterns left out
  compression: gzip                   # gzip | zstd

# Optional: model files, a layer below the code, so that a code-only update does not
# re-send the weights.
# model:
#   path: model
#   target: /models
#   framework: onnx                   # free text: onnx, pytorch, tensorflow, ...
#   format: onnx
#   description: "What the model detects."
#   compression: auto                 # auto (none when it saves < 10 %) | none | gzip | zstd

# Optional: source or training data; pushed with the bundle, never in the runnable image.
# data:
#   path: data
#   description: "Where the data came from."

# Optional: an initial performance profile (a JSON object).
# profile:
#   path: profile.json
"""

STARTER_RUN_SH = """\
#!/bin/sh
# Starter plugin: prints a greeting and the value of the `interval` input.
# By convention inputs are read from environment variables (interval -> INTERVAL), falling
# back to the default declared in ecr.yaml.
set -eu
echo "${{GREETING:-hello}} from {namespace}/{name}"
echo "interval=${{INTERVAL:-30}}"
"""


def write_starter(directory: Path, *, namespace: str, name: str) -> list[Path]:
    """Create ``directory`` (if needed) with a starter ``ecr.yaml`` and ``src/run.sh``.

    Returns the files written. Raises :class:`BundleSpecError` if ``ecr.yaml`` already exists (an
    author's description is never overwritten) or if ``namespace``/``name`` are not valid names. An
    existing ``src/run.sh`` is kept: the author may be adding ``ecr.yaml`` to existing code.
    """
    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    for field, value in (("metadata.namespace", namespace), ("metadata.name", name)):
        try:
            check_name(value)
        except ValueError as err:
            raise BundleSpecError(
                f"{err}; pass a valid --{field.split('.')[1]}", file=str(spec_path), field=field
            ) from None
    if spec_path.exists() or spec_path.is_symlink():
        raise BundleSpecError(
            f"{SPEC_FILE} already exists; edit it, or remove it to start over",
            file=str(spec_path),
        )
    directory.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(STARTER_YAML.format(namespace=namespace, name=name))
    written = [spec_path]
    run_sh = directory / "src" / "run.sh"
    if not run_sh.exists():
        run_sh.parent.mkdir(parents=True, exist_ok=True)
        run_sh.write_text(STARTER_RUN_SH.format(namespace=namespace, name=name))
        run_sh.chmod(0o755)
        written.append(run_sh)
    return written


def default_name(directory: Path) -> str:
    """The directory's name as a plugin name: ``My Plugin_v2`` → ``my-plugin-v2``.

    What ``ecr-oci init`` uses when no ``--name`` is given. Raises :class:`BundleSpecError` when
    nothing usable is left (``ecr-oci init .`` in ``/``).
    """
    base = directory.resolve().name.lower()
    cleaned = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:64].rstrip("-")
    if len(cleaned) < 2:
        raise BundleSpecError(
            f"cannot make a plugin name from the directory name {base!r}; pass --name",
            file=str(directory / SPEC_FILE),
            field="metadata.name",
        )
    return cleaned
