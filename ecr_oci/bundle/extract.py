"""Safe, all-or-nothing extraction of a layer blob as it streams in (``ecr-oci pull``).

    >>> import io, tarfile, tempfile
    >>> from pathlib import Path
    >>> buf = io.BytesIO()
    >>> with tarfile.open(fileobj=buf, mode="w") as tf:
    ...     info = tarfile.TarInfo("app/run.sh"); info.size = 3
    ...     tf.addfile(info, io.BytesIO(b"hi\\n"))
    >>> out = Path(tempfile.mkdtemp()) / "src"
    >>> stats = extract_layer([buf.getvalue()], out, media_type_compression=None,
    ...                       strip_prefix="app")
    >>> (out / "run.sh").read_text(), stats.files, stats.bytes
    ('hi\\n', 1, 3)

A layer comes from a registry, which the puller need not trust (issue 2 part 8: "no ``..``, absolute
paths, links escaping DIR, devices; size limits against archive bombs"). Entries are checked one by
one as the tar streams through ``tarfile`` in stream mode (``r|``), so nothing is buffered and a
bomb is stopped as soon as it crosses a limit:

* names: absolute, with ``..``, or outside ``strip_prefix`` → refused;
* links: symlinks and hard links whose target resolves outside the output, absolute symlinks,
  hard links to anything but an extracted regular file → refused;
* devices, FIFOs and other special entries → refused;
* an entry whose path goes through a symlink extracted earlier → refused (a symlink may be
  harmless alone and only dangerous combined with a later entry);
* limits: total bytes, number of entries, and the decompression ratio (bytes out / bytes in).

:func:`tarfile.data_filter` (Python 3.11.4+, PEP 706) runs first on every entry, and the checks
above run as well. Both, because ``data_filter`` knows nothing about sizes, entry counts, ratios
or our prefix stripping, silently turns ``/abs`` into ``abs`` where we want a refusal, lets a path
go through an in-tree symlink, and has itself needed fixes (CVE-2025-4517 and friends, fixed only
in 3.11.13): two independent checks make one bug survivable.

Files are written into a private temporary directory next to ``dest`` and renamed into place only
after the whole blob was read, the compressed stream ended cleanly and (when ``expected_digest`` is
given) the digest matched. On any error the temporary directory is removed and ``dest`` is
untouched. Extracted files get the current time, not the layer's fixed mtime (0 = 1970), so tools
like ``make`` behave; modes are kept (0644/0755).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

import zstandard

from ecr_oci.digest import Digest, DigestingReader
from ecr_oci.errors import DigestMismatchError, Error, UnsafeArchiveError

#: Largest total a layer may expand to (file contents, and the whole tar stream).
DEFAULT_MAX_TOTAL_BYTES = 64 << 30
DEFAULT_MAX_ENTRIES = 1_000_000
#: Largest decompressed/compressed ratio; gzip peaks near 1030:1 on zeros, real layers stay far
#: below 200:1.
DEFAULT_MAX_RATIO = 200
#: The ratio is only judged after this many decompressed bytes: tiny layers (a 10 KiB tar of
#: headers and padding gzips to a few hundred bytes) have huge ratios and no danger.
RATIO_FLOOR = 8 << 20

_READ = 1 << 16
_COPY = 1 << 20


@dataclass(frozen=True)
class ExtractStats:
    """What :func:`extract_layer` wrote, and what it received."""

    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    #: Bytes of regular-file content written.
    bytes: int
    #: Tar entries seen, skipped prefix directories included.
    entries: int
    #: Size and sha256 of the blob as received (compressed).
    compressed_size: int
    digest: Digest


class _ChunkReader(io.RawIOBase):
    """A raw file over an iterable of byte chunks; a :class:`DigestingReader` hashes and counts."""

    def __init__(self, chunks: Iterable[bytes], algorithm: str) -> None:
        self._digesting = DigestingReader(chunks, algorithm=algorithm)
        self._chunks: Iterator[bytes] = iter(self._digesting)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk).cast("B")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        """Hash whatever was not read yet (to tell corruption from a malicious archive)."""
        self._pending = memoryview(b"")
        for _ in self._chunks:
            pass

    @property
    def size(self) -> int:
        return self._digesting.size

    @property
    def digest(self) -> Digest:
        return self._digesting.digest


class _GzipReader(io.RawIOBase):
    """Decompress gzip (RFC 1952) from ``source`` with bounded output per read.

    ``zlib.decompressobj(47)`` with ``max_length`` never produces more than asked, so a 1 MiB chunk
    of a bomb cannot become 1 GiB in memory. Several members in a row (``cat a.gz b.gz``) and zero
    padding after the last member are accepted, as ``gzip -d`` does.
    """

    def __init__(self, source: io.RawIOBase) -> None:
        self._source = source
        self._inflate = zlib.decompressobj(47)
        self._input = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._inflate.eof:
                rest = self._inflate.unused_data.lstrip(b"\x00")
                while not rest:
                    more = self._source.read(_READ)
                    if not more:
                        return 0
                    rest = more.lstrip(b"\x00")
                self._inflate = zlib.decompressobj(47)
                self._input = rest
            if not self._input:
                self._input = self._inflate.unconsumed_tail or self._source.read(_READ) or b""
                if not self._input:
                    raise _Malformed("the gzip stream is truncated")
            out = self._inflate.decompress(self._input, len(buffer))
            self._input = self._inflate.unconsumed_tail
            if out:
                buffer[: len(out)] = out
                return len(out)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Malformed(Exception):
    """Internal: the compressed or tar stream is not valid (mapped to UnsafeArchiveError)."""


class _Limiter(io.RawIOBase):
    """Count the decompressed tar stream and stop it at the size and ratio limits."""

    def __init__(
        self,
        inner: _Readable,
        source: _ChunkReader,
        *,
        max_total_bytes: int,
        max_ratio: int | None,
        label: str,
    ) -> None:
        self._inner = inner
        self._source = source
        self._max_total = max_total_bytes
        self._max_ratio = max_ratio
        self._label = label
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        if not data:
            return 0
        n = len(data)
        buffer[:n] = data
        self.size += n
        if self.size > self._max_total:
            raise UnsafeArchiveError(
                f"{self._label}: expands to more than {self._max_total} bytes (the size limit); "
                "refusing it as a possible archive bomb"
            )
        ratio = self._max_ratio
        if ratio is not None and self.size > RATIO_FLOOR and self.size > ratio * self._source.size:
            raise UnsafeArchiveError(
                f"{self._label}: decompresses more than {ratio}:1 ({self.size} bytes from "
                f"{self._source.size}); refusing it as a possible archive bomb"
            )
        return n


def extract_layer(
    chunks: Iterable[bytes],
    dest: Path,
    *,
    media_type_compression: str | None,
    strip_prefix: str | None = None,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: int = DEFAULT_MAX_RATIO,
    expected_digest: Digest | None = None,
) -> ExtractStats:
    """Extract the layer blob streamed as ``chunks`` into the new directory ``dest``.

    ``media_type_compression`` is ``gzip``, ``zstd`` or ``None`` (from
    :attr:`ecr_oci.mediatypes.MediaType.compression`). ``strip_prefix`` (``app`` or ``/app/``)
    removes the layer's target directory so ``app/run.sh`` lands at ``dest/run.sh``; directory
    entries for the prefix and its parents are skipped, any other entry outside it is refused.
    ``dest`` must not exist or be an empty directory; its parent is created when missing.

    When ``expected_digest`` is given, the blob is hashed as it flows and compared at the end; on a
    mismatch, or when a corrupt blob fails earlier, :class:`~ecr_oci.errors.DigestMismatchError` is
    raised (the rest of the blob is read to tell corruption from a malicious archive).

    Raises :class:`~ecr_oci.errors.UnsafeArchiveError` for a refused entry, a limit crossed or a
    malformed stream, :class:`~ecr_oci.errors.DigestMismatchError` as above,
    :class:`~ecr_oci.errors.Error` when ``dest`` exists and is not an empty directory. In every
    error case nothing is left at ``dest``.
    """
    if media_type_compression not in (None, "gzip", "zstd"):
        raise ValueError(f"unknown compression {media_type_compression!r}")
    dest = dest.absolute()
    _check_dest(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    label = f"layer {expected_digest}" if expected_digest else "layer"
    source = _ChunkReader(chunks, expected_digest.algorithm if expected_digest else "sha256")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        try:
            writer = _extract_stream(
                source,
                tmp,
                compression=media_type_compression,
                prefix=_split_prefix(strip_prefix),
                limits=(max_total_bytes, max_entries, max_ratio),
                label=label,
            )
        except UnsafeArchiveError as err:
            if expected_digest is not None:
                source.drain()
                _verify(source, expected_digest, label, dest, cause=err)
            raise
        source.drain()
        if expected_digest is not None:
            _verify(source, expected_digest, label, dest, cause=None)
        tmp.chmod(0o755)
        tmp.rename(dest)  # atomic; replaces an empty directory on POSIX
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExtractStats(
        files=writer.files,
        dirs=writer.dirs,
        symlinks=writer.symlinks,
        hardlinks=writer.hardlinks,
        bytes=writer.bytes,
        entries=writer.entries,
        compressed_size=source.size,
        digest=source.digest,
    )


def _check_dest(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise Error(f"{dest} exists and is not a directory; choose another output directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise Error(f"{dest} already exists and is not empty; choose another output directory")


def _verify(source: _ChunkReader, expected: Digest, label: str, dest: Path, cause: Exception | None) -> None:
    actual = source.digest
    if actual != expected:
        raise DigestMismatchError(
            f"{label}: content hashes to {actual}, expected {expected} (corrupted in transit or "
            f"in the registry); nothing was written to {dest}"
        ) from cause


def _split_prefix(prefix: str | None) -> tuple[str, ...]:
    if not prefix:
        return ()
    parts = tuple(p for p in prefix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError(f"strip_prefix {prefix!r} must not contain '..'")
    return parts


def _extract_stream(
    source: _ChunkReader,
    tmp: Path,
    *,
    compression: str | None,
    prefix: tuple[str, ...],
    limits: tuple[int, int, int],
    label: str,
) -> _Writer:
    """Check and write every entry into ``tmp``; the returned writer holds the counts."""
    max_total_bytes, max_entries, max_ratio = limits
    decoded: _Readable
    if compression == "gzip":
        decoded = _GzipReader(source)
    elif compression == "zstd":
        decoded = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], source), read_size=_READ, read_across_frames=True, closefd=False
        )
    else:
        decoded = source
    limited = _Limiter(
        decoded,
        source,
        max_total_bytes=max_total_bytes,
        max_ratio=max_ratio if compression else None,
        label=label,
    )
    writer = _Writer(tmp, label=label, prefix=prefix, max_total_bytes=max_total_bytes)
    try:
        with tarfile.open(fileobj=limited, mode="r|", bufsize=_COPY) as tf:
            while (member := tf.next()) is not None:
                # Stream mode keeps every TarInfo in tf.members; we never look back, so drop them
                # to keep memory flat for a layer with a million entries.
                tf.members.clear()  # type: ignore[attr-defined]  # public, missing in typeshed
                writer.entries += 1
                if writer.entries > max_entries:
                    raise UnsafeArchiveError(
                        f"{label}: more than {max_entries} entries; refusing it as a possible archive bomb"
                    )
                writer.add(member, tf)
        # Read to the end: the end-of-archive padding, the gzip trailer (its CRC is checked), and
        # whatever follows, all still under the limits.
        while limited.read(_COPY):
            pass
    except (tarfile.TarError, zlib.error, zstandard.ZstdError, _Malformed, EOFError) as err:
        what = f"{compression} tar" if compression else "tar"
        raise UnsafeArchiveError(f"{label}: not a valid {what} stream ({err})") from None
    writer.finish()
    return writer


class _Writer:
    """Checks and writes one entry at a time into the private directory ``root``."""

    def __init__(self, root: Path, *, label: str, prefix: tuple[str, ...], max_total_bytes: int) -> None:
        self.root = root
        self.label = label
        self.prefix = prefix
        self.max_total_bytes = max_total_bytes
        self.files = self.dirs = self.symlinks = self.hardlinks = self.bytes = self.entries = 0
        self._dirs: list[Path] = []

    def _refuse(self, member: tarfile.TarInfo, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.label} entry {member.name!r}: {why}")

    def _relative(self, member: tarfile.TarInfo, name: str, what: str) -> tuple[str, ...] | None:
        """``name`` as path parts below the prefix; ``None`` to skip (the prefix or a parent)."""
        if "\x00" in name:
            raise self._refuse(member, f"{what} contains a NUL byte")
        if name.startswith("/"):
            raise self._refuse(member, f"absolute {what}; path escapes the output directory")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self._refuse(member, f"{what} has '..'; path escapes the output directory")
        n = len(self.prefix)
        if parts[:n] == self.prefix:
            return parts[n:] or None
        if member.isdir() and parts == self.prefix[: len(parts)]:
            return None
        raise self._refuse(member, f"{what} is outside the layer's prefix {'/'.join(self.prefix)}/")

    def add(self, member: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        parts = self._relative(member, member.name, "path")
        if parts is None:
            if not member.isdir():
                raise self._refuse(member, "only a directory may stand for the output directory")
            return
        name = "/".join(parts)
        link_parts: tuple[str, ...] | None = None
        if member.islnk():
            link_parts = self._relative(member, member.linkname, "hard link target")
            if link_parts is None:
                raise self._refuse(member, "hard link to a directory")
        linkname = member.linkname if link_parts is None else "/".join(link_parts)
        # First line of defence (PEP 706); our own checks follow.
        try:
            renamed = member.replace(name=name, linkname=linkname, deep=False)
            safe = tarfile.data_filter(renamed, str(self.root))
        except tarfile.FilterError as err:
            raise self._refuse(member, _filter_reason(err)) from None

        if not (safe.isreg() or safe.isdir() or safe.issym() or safe.islnk()):
            raise self._refuse(member, "device, FIFO or other special file")
        self._check_parents(member, parts)
        path = self.root.joinpath(*parts)

        if safe.isdir():
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                raise self._refuse(member, "directory replaces an earlier non-directory")
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._dirs.append(path)
            self.dirs += 1
            return
        if path.is_dir() and not path.is_symlink():
            raise self._refuse(member, "replaces an earlier directory")
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()  # a later entry wins (layer semantics); never write through a link

        if safe.issym():
            self._check_symlink(member, parts, safe.linkname)
            path.symlink_to(safe.linkname)
            self.symlinks += 1
        elif safe.islnk():
            assert link_parts is not None
            self._check_parents(member, link_parts)
            target = self.root.joinpath(*link_parts)
            if not target.is_symlink() and target.is_file():
                os.link(target, path, follow_symlinks=False)
                self.hardlinks += 1
            else:
                raise self._refuse(member, "hard link to something that is not an extracted file")
        else:
            if self.bytes + member.size > self.max_total_bytes:
                raise self._refuse(
                    member,
                    f"the layer's files exceed {self.max_total_bytes} bytes (the size limit); "
                    "refusing it as a possible archive bomb",
                )
            self._write_file(member, tf, path, 0o644 if safe.mode is None else safe.mode)

    def _write_file(self, member: tarfile.TarInfo, tf: tarfile.TarFile, path: Path, mode: int) -> None:
        reader = tf.extractfile(member)
        assert reader is not None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            remaining = member.size
            while remaining:
                data = reader.read(min(_COPY, remaining))
                if not data:
                    raise _Malformed(f"entry {member.name!r} is truncated")
                out.write(data)
                remaining -= len(data)
            os.fchmod(out.fileno(), mode)
        self.files += 1
        self.bytes += member.size

    def _check_parents(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        """Refuse a path whose existing parent components include a symlink or a non-directory."""
        current = self.root
        for part in parts[:-1]:
            current = current / part
            try:
                st = current.lstat()
            except FileNotFoundError:
                return
            if stat.S_ISLNK(st.st_mode):
                raise self._refuse(member, f"goes through the symlink {current.relative_to(self.root)}")
            if not stat.S_ISDIR(st.st_mode):
                raise self._refuse(member, f"goes through {current.relative_to(self.root)}, not a directory")

    def _check_symlink(self, member: tarfile.TarInfo, parts: tuple[str, ...], text: str) -> None:
        if text.startswith("/") or "\x00" in text:
            raise self._refuse(member, f"absolute symlink to {text!r}")
        depth = len(parts) - 1  # directories between the output root and the link
        for piece in text.split("/"):
            if piece == "..":
                depth -= 1
                if depth < 0:
                    raise self._refuse(member, f"symlink to {text!r} escapes the output directory")
            elif piece not in ("", "."):
                depth += 1
        root = os.path.realpath(self.root)
        resolved = os.path.realpath(self.root.joinpath(*parts[:-1], text))
        if os.path.commonpath([resolved, root]) != root:
            raise self._refuse(member, f"symlink to {text!r} escapes the output directory")

    def finish(self) -> None:
        """Give directories their mode (0755) last; until then they are private (0700)."""
        for path in self._dirs:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)


def _filter_reason(err: tarfile.FilterError) -> str:
    if isinstance(err, tarfile.SpecialFileError):
        return "device, FIFO or other special file"
    if isinstance(err, tarfile.AbsoluteLinkError):
        return "absolute link target; link escapes the output directory"
    if isinstance(err, tarfile.LinkOutsideDestinationError):
        return "link target escapes the output directory"
    return "path escapes the output directory"
