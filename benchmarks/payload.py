"""What the contenders push: random models, generated code, the bench bundle, an OCI layout.

    >>> write_random_file(Path("/tmp/m.bin"), 64 << 20)               # doctest: +SKIP
    >>> write_bundle(Path("/tmp/b"), base="127.0.0.1:5000/base/busybox:1.36",
    ...              version="1.0.0", model_size=64 << 20)             # doctest: +SKIP

Every contender gets its *own* ``os.urandom`` bytes: a registry stores blobs by digest, so a
second push of the same bytes would be a no-op and flatter whoever came second. Random data also
does not compress, so ecr-oci's ``auto`` compression keeps the model layer a plain tar, the same
kind of layer the peers push.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = [
    "CHUNK",
    "bump_code",
    "write_bundle",
    "write_code_tree",
    "write_random_file",
    "write_random_layout",
]

#: Random data is generated and written in pieces of this size (the brief's 16 MiB).
CHUNK = 16 << 20
#: About this much generated source goes into the bench bundle's code folder, so the code layer
#: is big enough (~1 MB gzipped) that manifest and config overhead do not dominate the update.
CODE_BYTES = 4 << 20
CODE_FILES = 64
#: The file :func:`bump_code` edits for the code-only update.
EDITED_FILE = "pkg/module_000.py"

_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

_WORDS = (
    "frame",
    "sensor",
    "reading",
    "buffer",
    "model",
    "image",
    "value",
    "count",
    "window",
    "sample",
    "stream",
    "result",
    "config",
    "camera",
    "audio",
    "thermal",
    "pressure",
    "humidity",
    "detector",
    "score",
    "label",
    "batch",
    "tensor",
    "device",
    "plugin",
)


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _copy_random(sink: BinaryIO, size: int, *hashes: _Hasher) -> None:
    """Write ``size`` random bytes to ``sink`` in :data:`CHUNK` pieces, feeding ``hashes``."""
    remaining = size
    while remaining:
        piece = os.urandom(min(CHUNK, remaining))
        sink.write(piece)
        for h in hashes:
            h.update(piece)
        remaining -= len(piece)


def write_random_file(path: Path, size: int) -> None:
    """A file of ``size`` fresh random bytes (a model no registry has seen)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        _copy_random(f, size)


# -- the bench bundle ----------------------------------------------------------------------------


def _source_file(rng: random.Random, number: int, size: int) -> str:
    """Python-looking text with random identifiers and numbers: compresses about as real code does
    (3-4x with gzip), unlike repeated lines that would shrink to nothing."""
    lines = [f'"""Generated module {number} for the ecr-oci benchmark."""', ""]
    length = sum(len(line) + 1 for line in lines)
    while length < size:
        name = "_".join(rng.choices(_WORDS, k=2)) + f"_{rng.getrandbits(24):06x}"
        a, b = rng.choice(_WORDS), rng.choice(_WORDS)
        block = [
            f"def {name}({a}, {b}={rng.randint(0, 99999)}):",
            f"    {a}_{rng.getrandbits(16):04x} = {a} * {rng.random():.6f} + {b}",
            f"    return {a}_{rng.getrandbits(16):04x} if {b} > {rng.randint(0, 999)} else None",
            "",
        ]
        lines += block
        length += sum(len(line) + 1 for line in block)
    return "\n".join(lines) + "\n"


def write_code_tree(src: Path, *, total: int = CODE_BYTES, files: int = CODE_FILES, seed: int = 0) -> None:
    """``run.sh`` plus ``files`` generated modules adding up to about ``total`` bytes."""
    rng = random.Random(seed)  # noqa: S311 - filler text, not a secret
    (src / "pkg").mkdir(parents=True, exist_ok=True)
    (src / "run.sh").write_text('#!/bin/sh\necho "bench plugin $(ls /models | wc -l) model file(s)"\n')
    for number in range(files):
        text = _source_file(rng, number, total // files)
        (src / "pkg" / f"module_{number:03d}.py").write_text(text)


def _ecr_yaml(base: str, version: str) -> str:
    return f"""\
apiVersion: ecr.waggle-sensor.org/v1
kind: Bundle
metadata:
  namespace: bench
  name: ecr-oci
  version: {version}
  description: "Benchmark bundle: a random model and generated code"
  license: MIT
runtime:
  base: {base}
  platforms: [linux/amd64]
  entrypoint: ["/bin/sh", "/app/run.sh"]
  workdir: /app
code:
  path: src
  target: /app
model:
  path: model
  target: /models
  framework: none
  format: raw
  description: "random bytes standing in for weights"
"""


def write_bundle(directory: Path, *, base: str, version: str, model_size: int, seed: int = 0) -> None:
    """The bench bundle: ``ecr.yaml``, generated ``src/``, a random ``model/model.bin``.

    Give each full push its own ``seed``: with the same code the registry would already hold the
    code layer, and that push would upload (and mean) less than a full push.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ecr.yaml").write_text(_ecr_yaml(base, version))
    write_code_tree(directory / "src", seed=seed)
    write_random_file(directory / "model" / "model.bin", model_size)


def bump_code(directory: Path, *, base: str, version: str) -> None:
    """The code-only update: append to one module and set ``version``; the model is untouched."""
    with (directory / "src" / EDITED_FILE).open("a") as f:
        f.write(f"\n\nBENCH_VERSION = {version!r}\n")
    (directory / "ecr.yaml").write_text(_ecr_yaml(base, version))


# -- an OCI image layout for crane and skopeo ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Blob:
    digest: str
    size: int

    def descriptor(self, media_type: str, **extra: object) -> dict[str, object]:
        return {"mediaType": media_type, "digest": self.digest, "size": self.size, **extra}


def _write_blob(layout: Path, data: bytes) -> _Blob:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return _Blob(f"sha256:{digest}", len(data))


def _write_random_tar_blob(layout: Path, size: int, arcname: str) -> _Blob:
    """One uncompressed tar holding ``arcname`` with ``size`` random bytes, hashed as written."""
    tmp = layout / "blobs" / "sha256" / "layer.partial"
    info = tarfile.TarInfo(arcname)
    info.size, info.mode, info.mtime = size, 0o644, 0
    digest = hashlib.sha256()
    with tmp.open("wb") as f:
        header = info.tobuf(format=tarfile.PAX_FORMAT)
        f.write(header)
        digest.update(header)
        _copy_random(f, size, digest)
        # file padding to a 512-byte block, then the two zero blocks that end the archive
        trailer = bytes(-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)
        f.write(trailer)
        digest.update(trailer)
        total = f.tell()
    tmp.rename(tmp.with_name(digest.hexdigest()))
    return _Blob(f"sha256:{digest.hexdigest()}", total)


def _canonical(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def write_random_layout(layout: Path, *, size: int, tag: str) -> int:
    """An OCI image layout with one image: a single uncompressed tar layer holding
    ``models/model.bin`` (``size`` random bytes) and a minimal linux/amd64 config.

    Returns the bytes of its blobs (layer + config), i.e. what a push of it uploads.
    """
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layer = _write_random_tar_blob(layout, size, "models/model.bin")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},  # uncompressed: diff_id = digest
    }
    config_blob = _write_blob(layout, _canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": config_blob.descriptor(_OCI_CONFIG),
        "layers": [layer.descriptor(_OCI_LAYER_TAR)],
    }
    manifest_blob = _write_blob(layout, _canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            manifest_blob.descriptor(_OCI_MANIFEST, annotations={"org.opencontainers.image.ref.name": tag}),
        ],
    }
    (layout / "index.json").write_bytes(_canonical(index))
    return layer.size + config_blob.size
