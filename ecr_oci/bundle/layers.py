"""Reproducible layer tars, measured and streamed without holding a layer in memory.

    >>> import tempfile
    >>> from pathlib import Path
    >>> src = Path(tempfile.mkdtemp())
    >>> _ = (src / "run.sh").write_text("echo hi\\n")
    >>> plan = scan(src, target="/app")
    >>> [(e.arcname, e.kind, oct(e.mode)) for e in plan.entries]
    [('app', 'dir', '0o755'), ('app/run.sh', 'file', '0o644')]
    >>> digests = measure(plan, compression="gzip")
    >>> digests == measure(scan(src, target="/app"), compression="gzip")
    True
    >>> plan.uncompressed_size == digests.uncompressed_size == 10240
    True

The push path needs a layer twice: once to learn its digests (to build the image config and to
ask the registry whether the blob already exists), and once more to upload it when it does not. A
1 GiB model must never sit in memory or on disk as a second copy, so :func:`scan` records *what*
goes into the tar (names, modes, sizes, the files' stat for the cache), and :func:`stream`
regenerates exactly the same bytes from the files every time it is called (DESIGN.md §3: "Layers
are reproducible").

Why the tar is written by hand: :mod:`tarfile` writes into a file object and cannot yield its
output as a generator; driving it through a pipe or a thread would cost a copy and a thread per
layer. The format is simple enough: per entry a header (``TarInfo.tobuf`` in PAX format, which
only adds a PAX record when a name is non-ASCII or too long), the content padded to 512 bytes, then
the end of archive (two zero blocks, padded to ``tarfile.RECORDSIZE`` exactly as ``tarfile`` does).
Python's ``tarfile``, GNU tar, containerd and podman read the result.

Reproducibility rules: entries sorted by archive name, mtime = ``epoch`` (SOURCE_DATE_EPOCH, read by
the CLI, never here), uid/gid 0, empty user/group names, file modes reduced to 0755/0644,
directories 0755, no atime/ctime records, gzip header without a time stamp and with OS = 255.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zstandard

from ecr_oci.digest import Digest
from ecr_oci.errors import BundleSpecError

#: Bumped whenever the bytes :func:`stream` produces for the same files change, so cached digests
#: (see :mod:`ecr_oci.bundle.layer_cache`) computed by an older version are never reused.
FORMAT_VERSION = 1

#: Compression level used when the caller passes ``None``.
DEFAULT_LEVELS: dict[str, int] = {"gzip": 6, "zstd": 3}
_LEVEL_RANGES: dict[str, range] = {"gzip": range(0, 10), "zstd": range(1, 23)}

#: The compressors are fed the tar stream in blocks of exactly this size, whatever ``chunk_size``
#: the caller asks for: deflate and zstd only promise the same output for the same sequence of
#: input calls, and the digest must not depend on a buffer size.
COMPRESS_BLOCK = 1 << 20

#: The largest mtime a plain ustar header holds (11 octal digits); a larger one would need a PAX
#: record and change the header size, which :attr:`LayerPlan.uncompressed_size` assumes it does not.
_MAX_EPOCH = 8**11 - 1

_BLOCK = tarfile.BLOCKSIZE
_END_OF_ARCHIVE = 2 * _BLOCK

EntryKind = Literal["dir", "file", "symlink"]


@dataclass(frozen=True)
class LayerEntry:
    """One tar entry: what :func:`stream` writes and what the cache fingerprint covers.

    ``source`` is ``None`` for the directories synthesised from the target path (``app/`` for
    ``/app``). ``mtime_ns``, ``ino`` and ``dev`` come from the file's stat and are only used for the
    cache fingerprint and to notice a file that changed after the scan; they never reach the tar.
    """

    arcname: str
    kind: EntryKind
    mode: int
    size: int = 0
    source: Path | None = None
    linkname: str = ""
    mtime_ns: int = 0
    ino: int = 0
    dev: int = 0
    header_size: int = _BLOCK


@dataclass(frozen=True)
class LayerPlan:
    """What a layer holds, in tar order, and its exact uncompressed size.

    Built by :func:`scan`; consumed by :func:`stream`, :func:`measure`, :func:`choose_compression`.
    """

    entries: tuple[LayerEntry, ...]
    uncompressed_size: int

    @property
    def files(self) -> int:
        """Number of regular files in the layer."""
        return sum(1 for e in self.entries if e.kind == "file")

    @property
    def data_size(self) -> int:
        """Sum of the regular files' sizes (no headers, no padding)."""
        return sum(e.size for e in self.entries if e.kind == "file")

    def fingerprint(self, compression: str | None, level: int, epoch: int) -> str:
        """A sha256 hex key that changes whenever the layer's bytes could change.

        Covers every entry's name, kind, mode, size, link text and the files' (mtime_ns, inode,
        device), the options, :data:`FORMAT_VERSION`, and the compressor library version (a newer
        zlib or libzstd may compress differently). Like ``git``'s index, it trusts stat: a file
        rewritten with the same size, inode and a restored mtime keeps its fingerprint.
        """
        h = hashlib.sha256()
        head = {
            "format": FORMAT_VERSION,
            "compression": compression,
            "level": level if compression else 0,
            "epoch": epoch,
            "library": _library_version(compression),
        }
        h.update(_canonical(head))
        for e in self.entries:
            h.update(b"\n")
            h.update(_canonical([e.arcname, e.kind, e.mode, e.size, e.mtime_ns, e.ino, e.dev, e.linkname]))
        return h.hexdigest()


@dataclass(frozen=True)
class LayerDigests:
    """The result of :func:`measure`: what an image manifest and config need to describe a layer.

    ``digest``/``size`` describe the blob as stored (compressed); ``diff_id`` is the sha256 of the
    uncompressed tar (image-spec config ``rootfs.diff_ids``). Without compression they are equal.
    """

    digest: Digest
    diff_id: Digest
    size: int
    uncompressed_size: int
    compression: str | None
    files: int


def default_level(compression: str | None, level: int | None = None) -> int:
    """The level that ``compression`` uses: ``level`` checked, or the default (gzip 6, zstd 3).

    Raises ``ValueError`` for an unknown compression or an out-of-range level (a programming error:
    ``ecr.yaml`` validation rejects bad values before they get here). ``None`` compression gives 0.
    """
    if compression is None:
        return 0
    if compression not in DEFAULT_LEVELS:
        raise ValueError(f"unknown compression {compression!r}; expected gzip, zstd or None")
    if level is None:
        return DEFAULT_LEVELS[compression]
    if level not in _LEVEL_RANGES[compression]:
        allowed = _LEVEL_RANGES[compression]
        raise ValueError(f"{compression} level {level} out of range {allowed.start}..{allowed.stop - 1}")
    return level


# --------------------------------------------------------------------------------------------- scan


def scan(source: Path, *, target: str, exclude: Sequence[str] = ()) -> LayerPlan:
    """Walk ``source`` (a directory or one file) and plan a layer that puts it at ``target``.

    Archive names are ``target`` without its leading ``/`` joined with the path relative to
    ``source`` (``/app`` + ``run.sh`` → ``app/run.sh``); the target directory and its parents are
    added as directory entries so the image has them with mode 0755. A single file lands at
    ``target/<its name>``. ``exclude`` globs (``fnmatch``, case-sensitive) match the relative path
    or the base name (a leading or trailing ``/`` is ignored); an excluded directory is skipped
    with everything below it.

    Raises :class:`~ecr_oci.errors.BundleSpecError` for a missing ``source``, a symlink whose target
    resolves outside ``source``, a device, FIFO or socket, an unreadable directory, or a bad
    ``target``.
    """
    prefix = _target_prefix(target, source)
    try:
        root_stat = source.stat()
    except OSError as err:
        raise BundleSpecError(
            f"{source} does not exist or cannot be read ({err.strerror}); fix the path in ecr.yaml",
            file=str(source),
        ) from None
    entries: list[LayerEntry] = []
    parts = prefix.split("/") if prefix else []
    for i in range(len(parts)):
        entries.append(_make_entry("/".join(parts[: i + 1]), "dir", 0o755))

    if stat.S_ISDIR(root_stat.st_mode):
        root_real = source.resolve()
        patterns = [p.strip("/") for p in exclude if p.strip("/")]
        for rel, path, st in _walk(source, patterns):
            arcname = f"{prefix}/{rel}" if prefix else rel
            entries.append(_entry_for(path, st, arcname, source, root_real))
    elif stat.S_ISREG(root_stat.st_mode):
        arcname = f"{prefix}/{source.name}" if prefix else source.name
        entries.append(_file_entry(source, root_stat, arcname))
    else:
        raise BundleSpecError(f"{source} is neither a directory nor a regular file", file=str(source))

    entries.sort(key=lambda e: e.arcname)
    size = sum(e.header_size + _padded(e.size) for e in entries)
    size += _END_OF_ARCHIVE
    size += -size % tarfile.RECORDSIZE
    return LayerPlan(entries=tuple(entries), uncompressed_size=size)


def _walk(source: Path, patterns: Sequence[str]) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Yield (relative posix path, path, lstat) for all below ``source``; links are not followed."""
    stack: list[tuple[str, Path]] = [("", source)]
    while stack:
        rel_dir, directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                children = [(d.name, Path(d.path), d.stat(follow_symlinks=False)) for d in it]
        except OSError as err:
            raise BundleSpecError(
                f"cannot read directory {directory} ({err.strerror})", file=str(directory)
            ) from None
        for name, path, st in children:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            yield rel, path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((rel, path))


def _entry_for(path: Path, st: os.stat_result, arcname: str, source: Path, root_real: Path) -> LayerEntry:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return _make_entry(arcname, "dir", 0o755)
    if stat.S_ISREG(mode):
        return _file_entry(path, st, arcname)
    if stat.S_ISLNK(mode):
        return _make_entry(arcname, "symlink", 0o777, linkname=_link_text(path, source, root_real))
    what = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device node"
    raise BundleSpecError(
        f"{path} is {what}; a bundle can only hold regular files, directories and symlinks "
        "(remove it or exclude it)",
        file=str(path),
    )


def _file_entry(path: Path, st: os.stat_result, arcname: str) -> LayerEntry:
    # Only the executable bit survives (hard links become independent regular files).
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    return _make_entry(
        arcname,
        "file",
        mode,
        size=st.st_size,
        source=path,
        mtime_ns=st.st_mtime_ns,
        ino=st.st_ino,
        dev=st.st_dev,
    )


def _link_text(path: Path, source: Path, root_real: Path) -> str:
    """The link text to store for the symlink ``path``; refuse links that leave ``source``.

    A relative link that stays inside lexically keeps its text; an absolute link (or one that goes
    out and back in) is rewritten relative to the link's directory, since host paths mean nothing
    inside the image.
    """
    text = str(path.readlink())
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: symlink loop (Python < 3.13)
        raise BundleSpecError(
            f"symlink {path} is part of a symlink loop; remove the link", file=str(path)
        ) from None
    if not resolved.is_relative_to(root_real):
        raise BundleSpecError(
            f"symlink {path} points outside the bundle directory (to {resolved}); "
            "copy the file in or remove the link",
            file=str(path),
        )
    rel_link = path.relative_to(source).as_posix()
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel_link), text))
    if not posixpath.isabs(text) and not lexical.startswith("../") and lexical != "..":
        return text
    link_dir = root_real / posixpath.dirname(rel_link)
    return Path(os.path.relpath(resolved, link_dir)).as_posix()


def _make_entry(
    arcname: str,
    kind: EntryKind,
    mode: int,
    *,
    size: int = 0,
    source: Path | None = None,
    linkname: str = "",
    mtime_ns: int = 0,
    ino: int = 0,
    dev: int = 0,
) -> LayerEntry:
    entry = LayerEntry(arcname, kind, mode, size, source, linkname, mtime_ns, ino, dev)
    # The header size does not depend on the epoch (checked to fit the ustar field).
    return dataclasses.replace(entry, header_size=len(_header(entry, 0)))


def _target_prefix(target: str, source: Path) -> str:
    prefix = target.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts) or "\x00" in prefix:
        raise BundleSpecError(
            f"target {target!r} must be an absolute path without '.', '..' or '//' (e.g. /app)",
            file=str(source),
        )
    return prefix


def _check_epoch(epoch: int) -> None:
    if not 0 <= epoch <= _MAX_EPOCH:
        raise ValueError(f"epoch {epoch} out of range 0..{_MAX_EPOCH} (SOURCE_DATE_EPOCH)")


# ------------------------------------------------------------------------------------------ stream


def _header(entry: LayerEntry, epoch: int) -> bytes:
    info = tarfile.TarInfo(entry.arcname)
    info.mode = entry.mode
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def _padded(size: int) -> int:
    return size + (-size % _BLOCK)


def _changed(path: Path) -> BundleSpecError:
    return BundleSpecError(
        f"{path} changed while the layer was being built; run the push again", file=str(path)
    )


def _unreadable(path: Path, err: OSError) -> BundleSpecError:
    if isinstance(err, FileNotFoundError):
        return _changed(path)
    return BundleSpecError(
        f"cannot read {path} ({err.strerror}); fix its permissions or exclude it", file=str(path)
    )


def _tar_blocks(plan: LayerPlan, epoch: int, block_size: int) -> Iterator[memoryview]:
    """Yield the tar as views of one reusable buffer, each exactly ``block_size`` but the last.

    A view is only valid until the next one is requested: file data is ``readinto`` the buffer, so
    nothing is copied on the way to the hash. Raises ``BundleSpecError`` when a file no longer
    matches the plan (size or mtime differ, shorter or longer than planned, gone).
    """
    buf = bytearray(block_size)
    view = memoryview(buf)
    fill = 0
    zeros = bytes(_END_OF_ARCHIVE)

    def put(data: bytes | memoryview) -> Iterator[memoryview]:
        nonlocal fill
        pos = 0
        while pos < len(data):
            n = min(block_size - fill, len(data) - pos)
            view[fill : fill + n] = data[pos : pos + n]
            fill += n
            pos += n
            if fill == block_size:
                yield view
                fill = 0

    for entry in plan.entries:
        yield from put(_header(entry, epoch))
        if entry.kind != "file":
            continue
        assert entry.source is not None
        path = entry.source
        try:
            f = path.open("rb", buffering=0)
        except OSError as err:
            raise _unreadable(path, err) from None
        with f:
            before = os.fstat(f.fileno())
            if before.st_size != entry.size or before.st_mtime_ns != entry.mtime_ns:
                raise _changed(path)
            remaining = entry.size
            while remaining:
                n = f.readinto(view[fill : fill + min(block_size - fill, remaining)])
                if not n:
                    raise _changed(path)  # shorter than planned
                fill += n
                remaining -= n
                if fill == block_size:
                    yield view
                    fill = 0
            if f.read(1):
                raise _changed(path)  # longer than planned
            if os.fstat(f.fileno()).st_mtime_ns != entry.mtime_ns:
                raise _changed(path)
        yield from put(zeros[: -entry.size % _BLOCK])

    # End of archive, then zeros up to a whole record, as tarfile.TarFile.close does.
    written = sum(e.header_size + _padded(e.size) for e in plan.entries)
    record_pad = plan.uncompressed_size - written
    while record_pad:
        n = min(record_pad, len(zeros))
        yield from put(zeros[:n])
        record_pad -= n
    if fill:
        yield view[:fill]


def _gzip_header(level: int) -> bytes:
    # RFC 1952 §2.3: ID1 ID2 CM=8 FLG=0, MTIME=0, XFL (2 = best, 4 = fastest), OS=255 (unknown).
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255])


def _pieces(
    plan: LayerPlan,
    *,
    compression: str | None,
    level: int,
    epoch: int,
    chunk_size: int,
    tar_sink: Callable[[memoryview], object] | None,
) -> Iterator[bytes | memoryview]:
    """The layer's bytes in order; uncompressed pieces are views valid until the next piece.

    ``tar_sink`` sees every uncompressed block (for the diff_id) before its compressed output.
    """
    if compression is None:
        yield from _tar_blocks(plan, epoch, chunk_size)
        return
    blocks = _tar_blocks(plan, epoch, COMPRESS_BLOCK)
    if compression == "gzip":
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        crc = 0
        yield _gzip_header(level)
        for block in blocks:
            if tar_sink is not None:
                tar_sink(block)
            crc = zlib.crc32(block, crc)
            out = deflate.compress(block)
            if out:
                yield out
        yield (
            deflate.flush()
            + (crc & 0xFFFFFFFF).to_bytes(4, "little")
            + (plan.uncompressed_size & 0xFFFFFFFF).to_bytes(4, "little")
        )
        return
    compressor = zstandard.ZstdCompressor(
        level=level, threads=0, write_checksum=False, write_content_size=False
    ).compressobj()
    for block in blocks:
        if tar_sink is not None:
            tar_sink(block)
        out = compressor.compress(block)
        if out:
            yield out
    yield compressor.flush()


def stream(
    plan: LayerPlan,
    *,
    compression: str | None,
    level: int | None = None,
    epoch: int = 0,
    chunk_size: int = 1 << 20,
) -> Iterator[bytes]:
    """Yield the layer blob (the tar, gzip- or zstd-compressed, or plain) chunk by chunk.

    The bytes are identical on every call and every machine with the same compressor library (see
    below) for the same files and options. ``chunk_size`` sets the size of the uncompressed pieces
    read from the files; compressors are always fed :data:`COMPRESS_BLOCK` blocks, so it never
    changes the output.

    gzip is written by hand (10-byte header, raw deflate, CRC32 + ISIZE trailer, RFC 1952) because
    zlib's own gzip wrapper (``wbits=31``) writes the OS byte of the build platform, which would
    make the digest machine-dependent; here MTIME = 0 and OS = 255. Deflate and zstd output can
    still differ between library *implementations* (zlib-ng, a new libzstd); the cache fingerprint
    includes the library version for that reason.

    Raises ``BundleSpecError`` when a file changed since :func:`scan` (different size or mtime,
    shorter or longer than planned, deleted), ``ValueError`` for a bad compression or level.
    """
    lvl = default_level(compression, level)
    _check_epoch(epoch)
    if chunk_size < _BLOCK:
        raise ValueError(f"chunk_size must be at least {_BLOCK}")
    for piece in _pieces(
        plan, compression=compression, level=lvl, epoch=epoch, chunk_size=chunk_size, tar_sink=None
    ):
        yield piece if isinstance(piece, bytes) else bytes(piece)


def measure(
    plan: LayerPlan, *, compression: str | None, level: int | None = None, epoch: int = 0
) -> LayerDigests:
    """Generate the layer once and return its digests and sizes; nothing is kept in memory.

    The compressed bytes and the uncompressed tar are hashed in the same pass (for an uncompressed
    layer they are the same bytes, hashed once). Raises like :func:`stream`.
    """
    lvl = default_level(compression, level)
    _check_epoch(epoch)
    blob_hash = hashlib.sha256()
    tar_hash = hashlib.sha256() if compression else blob_hash
    size = 0
    for piece in _pieces(
        plan,
        compression=compression,
        level=lvl,
        epoch=epoch,
        chunk_size=COMPRESS_BLOCK,
        tar_sink=tar_hash.update if compression else None,
    ):
        blob_hash.update(piece)
        size += len(piece)
    return LayerDigests(
        digest=Digest("sha256", blob_hash.hexdigest()),
        diff_id=Digest("sha256", tar_hash.hexdigest()),
        size=size,
        uncompressed_size=plan.uncompressed_size,
        compression=compression,
        files=plan.files,
    )


# ------------------------------------------------------------------------------------- compression

#: ``auto`` keeps a layer uncompressed when a zlib-1 sample shrinks by less than this fraction.
MIN_SAVING = 0.10
_SAMPLE_SLICE = 1 << 20
_SAMPLE_SLICES = 3
_SMALL_LAYER = 64 << 10


def choose_compression(plan: LayerPlan, requested: str) -> str | None:
    """Resolve ``requested`` (``gzip``, ``zstd``, ``none``, ``auto``) to a compression or ``None``.

    ``auto`` decides for models (issue 2 part 5): weights are often incompressible, and gzip on them
    costs CPU at push and pull (30 MB/s at -6) for a few percent. Up to three 1 MiB slices, spread
    over the biggest files (all the data when it is smaller than that), are compressed with zlib
    level 1; if that saves less than :data:`MIN_SAVING` (10 %) the layer stays a plain tar, else
    it is ``gzip`` — not zstd, since every Docker, containerd and podman version pulls gzip layers.
    Layers with less than 64 KiB of file data are always ``gzip``: too little to judge, and their tar
    headers and padding compress well.

    Raises ``ValueError`` for an unknown value, ``BundleSpecError`` when a file vanished.
    """
    if requested in ("gzip", "zstd"):
        return requested
    if requested == "none":
        return None
    if requested != "auto":
        raise ValueError(f"unknown compression {requested!r}; expected auto, gzip, zstd or none")
    files = sorted(
        (e for e in plan.entries if e.kind == "file" and e.size),
        key=lambda e: (-e.size, e.arcname),
    )
    total = sum(e.size for e in files)
    if total < _SMALL_LAYER:
        return "gzip"  # too little to judge; headers and padding compress anyway, CPU cost is nil
    budget = _SAMPLE_SLICE * _SAMPLE_SLICES
    slices: list[tuple[LayerEntry, int, int]] = []
    if total <= budget:
        slices = [(e, 0, e.size) for e in files]
    else:
        # One slice from the middle of each of the three biggest files; fewer files get more
        # slices each, spread evenly (a file with k slices is cut at 1/(k+1), 2/(k+1), ...).
        picked = files[:_SAMPLE_SLICES]
        for i, entry in enumerate(picked):
            k = _SAMPLE_SLICES // len(picked) + (i < _SAMPLE_SLICES % len(picked))
            length = min(_SAMPLE_SLICE, entry.size)
            span = entry.size - length
            slices.extend((entry, span * (j + 1) // (k + 1), length) for j in range(k))
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15)
    sampled = compressed = 0
    for entry, offset, length in slices:
        assert entry.source is not None
        try:
            with entry.source.open("rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as err:
            raise _unreadable(entry.source, err) from None
        sampled += len(data)
        compressed += len(deflate.compress(data))
    compressed += len(deflate.flush())
    if sampled == 0:
        return "gzip"
    return None if compressed > sampled * (1 - MIN_SAVING) else "gzip"


# ---------------------------------------------------------------------------------------- helpers


def _canonical(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def _library_version(compression: str | None) -> str:
    if compression == "gzip":
        return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"
    if compression == "zstd":
        return "zstd " + ".".join(map(str, zstandard.ZSTD_VERSION))
    return ""
