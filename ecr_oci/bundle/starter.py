"""A commented starter bundle for ``ecr-oci init``: ``ecr.yaml`` plus ``src/run.sh``.

    >>> from pathlib import Path
    >>> import tempfile
    >>> directory = Path(tempfile.mkdtemp()) / "hello"
    >>> [str(p.relative_to(directory)) for p in write_starter(directory, namespace="waggle", name="hello")]
    ['ecr.yaml', 'src/run.sh']

Why commented: the starter is the documentation an author reads first, so every key is explained
where it is written, and the optional sections (model, data, profile) are shown commented out. The
starter is valid as written (``tests/unit/bundle/test_starter.py`` loads it), so ``ecr-oci init`` then
``ecr-oci push`` works before anything is edited.
"""

from __future__ import annotations

from pathlib import Path

from ecr_oci.bundle.spec import check_name
from ecr_oci.bundle.spec_loader import SPEC_FILE
from ecr_oci.errors import BundleSpecError

STARTER_YAML = """\
# ecr.yaml — describes one bundle (one plugin version) for the Edge Code Repository.
# Check it with `ecr-oci validate .`, publish it with `ecr-oci push . --registry HOST:PORT`.
# Unknown keys are errors; paths are relative to this folder.

apiVersion: ecr.waggle-sensor.org/v1   # format of this file; always this value for now
kind: Bundle                           # always Bundle

metadata:
  namespace: {namespace}   # owner (user or team): 2-64 of a-z 0-9 - _
  name: {name}   # plugin name, same rule; pushed as NAMESPACE/NAME
  version: 0.1.0                       # semantic version (MAJOR.MINOR.PATCH); becomes the image tag,
                                       # and a pushed version is immutable: bump it for every change
  description: "Says hello and prints its interval input."   # one line: what the plugin does
  authors: []                          # e.g. [{{name: Ada Lovelace, email: ada@example.org, orcid: 0000-0002-1825-0097}}]
  license: MIT                         # SPDX expression (MIT, Apache-2.0, "MIT OR Apache-2.0", LicenseRef-...)
  keywords: [example]                  # words people search for
  # homepage: https://github.com/you/plugin   # http(s) page about the plugin
  # source: {{url: https://github.com/you/plugin, commit: 40-hex-commit}}
  #                                    # omit: filled from git (commit, remote URL, dirty flag)

runtime:
  base: 127.0.0.1:5000/base/busybox:1.36   # base image (with its registry); code and model go on top
  # platforms: [linux/amd64, linux/arm64]  # os/arch[/variant]; omit for every platform of the base
  entrypoint: ["/bin/sh", "/app/run.sh"]   # the program the container starts (required)
  cmd: []                                  # default arguments after the entrypoint
  env: {{GREETING: hello}}                   # environment variables (values are text: quote numbers)
  workdir: /app                            # working directory in the container (absolute)
  requirements: []                         # runtime needs, for people and schedulers, e.g. ["pytorch>=2.0"]
  resources: {{cpu: "1", memory: 64Mi, gpu: none}}   # hints; gpu: none | optional | required

inputs:                                # plugin parameters; each is also the env var ID in upper case
  - id: interval                       # lower-case id; here the variable is INTERVAL
    type: int                          # int | float | str | bool
    default: 30                        # must match the type
    description: "Seconds between two readings."

code:                                  # required: the code layer (small, changes often)
  path: src                            # folder in this directory
  target: /app                         # where it appears in the container
  exclude: ["*.pyc", "__pycache__"]    # glob patterns left out
  compression: gzip                    # gzip | zstd

# model:                               # optional: model files, a separate layer below the code, so a
#   path: model                        # code-only update does not re-send the weights
#   target: /models
#   framework: onnx                    # free text: onnx, pytorch, tensorflow, ...
#   format: onnx
#   description: "What the model detects."
#   compression: auto                  # auto (uncompressed when compression saves < 10 %) | none | gzip | zstd

# data:                                # optional: source/training data; pushed with the bundle,
#   path: data                         # never part of the runnable image
#   description: "Where the data came from."

# profile:                             # optional: an initial performance profile (JSON)
#   path: profile.json
"""

STARTER_RUN_SH = """\
#!/bin/sh
# Starter plugin: prints a greeting and the value of the `interval` input.
# Inputs arrive as environment variables (interval -> INTERVAL); the default is in ecr.yaml.
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
