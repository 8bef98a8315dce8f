"""Layer extraction: good layers land whole; hostile or corrupt ones leave nothing behind."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import zstandard

from ecr_oci.bundle.extract import RATIO_FLOOR, extract_layer
from ecr_oci.bundle.layers import scan, stream
from ecr_oci.digest import Digest
from ecr_oci.errors import DigestMismatchError, Error, UnsafeArchiveError

Member = tuple[tarfile.TarInfo, bytes]


def file_(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def dir_(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, b""


def link(name: str, target: str, *, hard: bool = False) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, b""


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, b""


def make_tar(members: Sequence[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def chunked(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


GOOD = [
    dir_("app"),
    file_("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
    dir_("app/sub"),
    file_("app/sub/data.txt", b"data" * 1000),
    link("app/current", "sub/data.txt"),
    link("app/hard", "app/run.sh", hard=True),
    file_("app/sub/empty"),
]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# ----------------------------------------------------------------------------------- good layers


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_good_layer_is_extracted(tmp_path: Path, compression: str | None) -> None:
    blob = compress(make_tar(GOOD), compression)
    dest = tmp_path / "out" / "code"
    stats = extract_layer(
        chunked(blob),
        dest,
        media_type_compression=compression,
        expected_digest=Digest.of(blob),
    )
    assert (dest / "app/run.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((dest / "app/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "app/sub/data.txt").stat().st_mode) == 0o644
    assert (dest / "app/current").readlink() == Path("sub/data.txt")
    assert (dest / "app/current").read_bytes() == b"data" * 1000
    assert (dest / "app/hard").stat().st_ino == (dest / "app/run.sh").stat().st_ino
    assert (dest / "app/sub/empty").read_bytes() == b""
    assert (stats.files, stats.dirs, stats.symlinks, stats.hardlinks) == (3, 2, 1, 1)
    assert stats.bytes == 18 + 4000
    assert stats.entries == len(GOOD)
    assert (stats.compressed_size, stats.digest) == (len(blob), Digest.of(blob))
    assert leftovers(dest.parent) == ["code"]


@pytest.mark.parametrize("prefix", ["app", "/app/", "app/"])
def test_strip_prefix(tmp_path: Path, prefix: str) -> None:
    dest = tmp_path / "src"
    extract_layer([make_tar(GOOD)], dest, media_type_compression=None, strip_prefix=prefix)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "current",
        "hard",
        "run.sh",
        "sub",
        "sub/data.txt",
        "sub/empty",
    ]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755


def test_strip_nested_prefix_skips_parent_directories(tmp_path: Path) -> None:
    tar = make_tar([dir_("opt"), dir_("opt/app"), file_("opt/app/x", b"x")])
    dest = tmp_path / "o"
    stats = extract_layer([tar], dest, media_type_compression=None, strip_prefix="/opt/app")
    assert leftovers(dest) == ["x"]
    assert (stats.entries, stats.files, stats.dirs) == (3, 1, 0)


def test_entry_outside_prefix_is_refused(tmp_path: Path) -> None:
    tar = make_tar([dir_("app"), file_("app/x", b"x"), file_("etc/passwd", b"root")])
    with pytest.raises(UnsafeArchiveError, match="outside the layer's prefix app/"):
        extract_layer([tar], tmp_path / "o", media_type_compression=None, strip_prefix="app")
    assert leftovers(tmp_path) == []


def test_our_own_layers_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("echo hi\n")
    (src / "run.sh").chmod(0o755)
    (src / "sub" / "ünï.txt").write_bytes(os.urandom(100_000))
    (src / "link").symlink_to("sub/ünï.txt")
    plan = scan(src, target="/opt/app")
    for compression in (None, "gzip", "zstd"):
        dest = tmp_path / f"out-{compression}"
        blob = b"".join(stream(plan, compression=compression))
        extract_layer([blob], dest, media_type_compression=compression, strip_prefix="opt/app")
        assert (dest / "sub" / "ünï.txt").read_bytes() == (src / "sub" / "ünï.txt").read_bytes()
        assert (dest / "link").readlink() == Path("sub/ünï.txt")
        assert os.access(dest / "run.sh", os.X_OK)


def test_later_entry_replaces_earlier_without_following_links(tmp_path: Path) -> None:
    tar = make_tar([file_("a", b"one"), file_("a", b"two"), link("l", "b"), file_("l", b"x")])
    dest = tmp_path / "o"
    extract_layer([tar], dest, media_type_compression=None)
    assert (dest / "a").read_bytes() == b"two"
    assert not (dest / "l").is_symlink()
    assert (dest / "l").read_bytes() == b"x"
    assert not (dest / "b").exists()


def test_multi_member_gzip_and_empty_destination_dir(tmp_path: Path) -> None:
    tar = make_tar(GOOD)
    blob = gzip.compress(tar[:5000], mtime=0) + gzip.compress(tar[5000:], mtime=0)
    dest = tmp_path / "o"
    dest.mkdir()
    extract_layer(chunked(blob, 333), dest, media_type_compression="gzip")
    assert (dest / "app/sub/data.txt").read_bytes() == b"data" * 1000


def test_non_empty_destination_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "o"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(Error, match="not empty"):
        extract_layer([make_tar(GOOD)], dest, media_type_compression=None)
    assert leftovers(dest) == ["keep"]


# ------------------------------------------------------------------------------- hostile layers

HOSTILE = {
    "dotdot": ([file_("../evil", b"x")], "'..'"),
    "dotdot-inside": ([dir_("a"), file_("a/../../evil", b"x")], "'..'"),
    "absolute": ([file_("/abs/evil", b"x")], "absolute path"),
    "symlink-absolute-then-through": (
        [link("etc", "/etc"), file_("etc/evil", b"x")],
        "escapes the output directory",
    ),
    "symlink-relative-escape": (
        [dir_("d"), link("d/up", "../../.."), file_("d/up/evil", b"x")],
        "escapes the output directory",
    ),
    "symlink-inside-then-through": (
        [dir_("real"), link("alias", "real"), file_("alias/evil", b"x")],
        "goes through the symlink alias",
    ),
    "hardlink-outside": ([link("h", "../../etc/passwd", hard=True)], "'..'"),
    "hardlink-absolute": ([link("h", "/etc/passwd", hard=True)], "absolute"),
    "hardlink-to-dir": (
        [dir_("d"), link("h", "d", hard=True)],
        "not an extracted file",
    ),
    "char-device": ([special("null", tarfile.CHRTYPE)], "device, FIFO"),
    "block-device": ([special("sda", tarfile.BLKTYPE)], "device, FIFO"),
    "fifo": ([special("pipe", tarfile.FIFOTYPE)], "device, FIFO"),
    "file-as-parent": ([file_("f", b"x"), file_("f/evil", b"x")], "not a directory"),
}


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_entries_are_refused_and_nothing_is_left(
    tmp_path: Path, case: str, compression: str | None
) -> None:
    members, message = HOSTILE[case]
    blob = compress(make_tar([file_("ok", b"fine"), *members]), compression)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match=message) as info:
        extract_layer(
            [blob],
            work / "out",
            media_type_compression=compression,
            expected_digest=Digest.of(blob),
        )
    assert str(info.value).startswith(f"layer {Digest.of(blob)} entry ")
    assert leftovers(work) == []
    assert leftovers(tmp_path) == ["work"]


def test_total_size_limit(tmp_path: Path) -> None:
    tar = make_tar([file_("a", b"x" * 6000), file_("b", b"y" * 6000)])
    with pytest.raises(UnsafeArchiveError, match="size limit"):
        extract_layer([tar], tmp_path / "o", media_type_compression=None, max_total_bytes=10_000)
    assert leftovers(tmp_path) == []
    # the decompressed stream is limited too (headers and padding count)
    with pytest.raises(UnsafeArchiveError, match="size limit"):
        extract_layer(
            [gzip.compress(tar)],
            tmp_path / "o",
            media_type_compression="gzip",
            max_total_bytes=4096,
        )
    assert leftovers(tmp_path) == []


def test_compression_bomb_is_stopped(tmp_path: Path) -> None:
    tar = make_tar([file_("zeros", bytes(4 * RATIO_FLOOR))])
    for compression in ("gzip", "zstd"):
        blob = compress(tar, compression)
        assert len(blob) * 200 < len(tar)
        with pytest.raises(UnsafeArchiveError, match="archive bomb"):
            extract_layer([blob], tmp_path / "o", media_type_compression=compression)
        assert leftovers(tmp_path) == []
    dest = tmp_path / "o"
    extract_layer([compress(tar, "gzip")], dest, media_type_compression="gzip", max_ratio=2000)
    assert (dest / "zeros").stat().st_size == 4 * RATIO_FLOOR


def test_too_many_entries(tmp_path: Path) -> None:
    tar = make_tar([file_(f"f{i}") for i in range(11)])
    with pytest.raises(UnsafeArchiveError, match="more than 10 entries"):
        extract_layer([tar], tmp_path / "o", media_type_compression=None, max_entries=10)
    assert leftovers(tmp_path) == []
    extract_layer([tar], tmp_path / "o", media_type_compression=None, max_entries=11)


# ------------------------------------------------------------------------------ corrupt layers


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    blob = gzip.compress(make_tar(GOOD), mtime=0)
    with pytest.raises(DigestMismatchError, match="nothing was written"):
        extract_layer(
            chunked(blob),
            tmp_path / "o",
            media_type_compression="gzip",
            expected_digest=Digest.of(b"something else"),
        )
    assert leftovers(tmp_path) == []


def test_corrupted_blob_reports_the_digest_mismatch(tmp_path: Path) -> None:
    good = gzip.compress(make_tar(GOOD), mtime=0)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(DigestMismatchError, match=f"expected {Digest.of(good)}"):
        extract_layer(
            [bytes(bad)],
            tmp_path / "o",
            media_type_compression="gzip",
            expected_digest=Digest.of(good),
        )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_truncated_or_garbage_streams_are_refused(tmp_path: Path, compression: str | None) -> None:
    blob = compress(make_tar(GOOD), compression)
    for broken in (blob[: len(blob) // 2], b"garbage" * 100):
        if compression is None and broken.startswith(b"garbage"):
            continue
        with pytest.raises(UnsafeArchiveError, match="not a valid"):
            extract_layer([broken], tmp_path / "o", media_type_compression=compression)
        assert leftovers(tmp_path) == []


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    tar = make_tar([dir_("a/b/c"), file_("x/y/z.txt", b"z")])
    dest = tmp_path / "o"
    extract_layer([tar], dest, media_type_compression=None)
    assert (dest / "a/b/c").is_dir()
    assert (dest / "x/y/z.txt").read_bytes() == b"z"
    assert stat.S_IMODE((dest / "a/b/c").stat().st_mode) == 0o755
