"""Reproducible layers: same files, same bytes; a valid tar/gzip/zstd stream; no slurping."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import pytest
import zstandard

from ecr_oci.bundle.layers import (
    COMPRESS_BLOCK,
    LayerPlan,
    choose_compression,
    measure,
    scan,
    stream,
)
from ecr_oci.errors import BundleSpecError

COMPRESSIONS = [None, "gzip", "zstd"]


def make_tree(root: Path, *, umask: int = 0o022, uid: int | None = None) -> Path:
    old = os.umask(umask)
    try:
        (root / "sub" / "__pycache__").mkdir(parents=True)
        (root / "run.sh").write_text("#!/bin/sh\necho hello\n")
        (root / "run.sh").chmod(0o755 & ~umask | 0o100)
        (root / "lib.py").write_text("print('lib')\n" * 100)
        (root / "lib.pyc").write_bytes(b"\x00compiled")
        (root / "sub" / "data.txt").write_text("data " * 1000)
        (root / "sub" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x01")
        (root / "sub" / "empty").write_bytes(b"")
        (root / "link").symlink_to("sub/data.txt")
    finally:
        os.umask(old)
    if uid is not None:
        for path in [root, *root.rglob("*")]:
            os.lchown(path, uid, uid)
    return root


def blob(plan: LayerPlan, compression: str | None, **kw: int) -> bytes:
    return b"".join(stream(plan, compression=compression, **kw))


def decompress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def read_tar(raw: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        return tf.getmembers()


# ------------------------------------------------------------------------------ reproducibility


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_same_files_give_the_same_digest_whatever_their_metadata(
    tmp_path: Path, compression: str | None
) -> None:
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b", umask=0o077, uid=1234)
    for i, path in enumerate(sorted(b.rglob("*"))):
        os.utime(path, ns=(10**18 + i, 10**18 + i), follow_symlinks=False)
    (b / "lib.py").chmod(0o600)

    first = measure(scan(a, target="/app"), compression=compression)
    again = measure(scan(a, target="/app"), compression=compression)
    other = measure(scan(b, target="/app"), compression=compression)

    assert first == again == other
    assert first.compression == compression
    assert first.files == 6


def test_every_compression_shares_the_diff_id(tmp_path: Path) -> None:
    plan = scan(make_tree(tmp_path / "a"), target="/app")
    results = [measure(plan, compression=c) for c in COMPRESSIONS]
    assert len({r.diff_id for r in results}) == 1
    assert len({r.digest for r in results}) == 3
    assert results[0].digest == results[0].diff_id


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_content_or_name_changes_change_the_digest(tmp_path: Path, compression: str | None) -> None:
    src = make_tree(tmp_path / "a")
    before = measure(scan(src, target="/app"), compression=compression)

    (src / "lib.py").write_text("print('LIB')\n" * 100)  # same size, other bytes
    content = measure(scan(src, target="/app"), compression=compression)
    (src / "lib.py").rename(src / "lib2.py")
    renamed = measure(scan(src, target="/app"), compression=compression)
    other_target = measure(scan(src, target="/srv"), compression=compression)

    assert len({before.digest, content.digest, renamed.digest, other_target.digest}) == 4


def test_epoch_and_level_are_honoured(tmp_path: Path) -> None:
    plan = scan(make_tree(tmp_path / "a"), target="/app")
    assert measure(plan, compression=None, epoch=0) != measure(plan, compression=None, epoch=1)
    assert {m.mtime for m in read_tar(blob(plan, None, epoch=1_700_000_000))} == {1_700_000_000}
    assert blob(plan, "gzip") == blob(plan, "gzip", level=6) != blob(plan, "gzip", level=1)
    assert blob(plan, "zstd") == blob(plan, "zstd", level=3) != blob(plan, "zstd", level=19)
    with pytest.raises(ValueError, match="level"):
        blob(plan, "gzip", level=10)
    with pytest.raises(ValueError, match="epoch"):
        blob(plan, None, epoch=-1)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_output_does_not_depend_on_chunk_size(tmp_path: Path, compression: str | None) -> None:
    src = tmp_path / "m"
    src.mkdir()
    (src / "w.bin").write_bytes(os.urandom(3 * COMPRESS_BLOCK + 17))
    (src / "t.txt").write_text("abc" * 500_000)
    plan = scan(src, target="/models")
    reference = blob(plan, compression)
    assert blob(plan, compression, chunk_size=4096) == reference
    assert blob(plan, compression, chunk_size=3 * 1024 * 1024 + 512) == reference


# -------------------------------------------------------------------------------- tar contents


def test_plan_lists_sorted_entries_with_parent_directories(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "a")
    plan = scan(src, target="/opt/app/", exclude=["*.pyc", "__pycache__"])
    assert [(e.arcname, e.kind, e.mode) for e in plan.entries] == [
        ("opt", "dir", 0o755),
        ("opt/app", "dir", 0o755),
        ("opt/app/lib.py", "file", 0o644),
        ("opt/app/link", "symlink", 0o777),
        ("opt/app/run.sh", "file", 0o755),
        ("opt/app/sub", "dir", 0o755),
        ("opt/app/sub/data.txt", "file", 0o644),
        ("opt/app/sub/empty", "file", 0o644),
    ]
    assert plan.entries[3].linkname == "sub/data.txt"


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tarfile_reads_the_layer_back(tmp_path: Path, compression: str | None) -> None:
    src = make_tree(tmp_path / "a", uid=4321)
    plan = scan(src, target="/app", exclude=["*.pyc", "__pycache__"])
    raw = decompress(blob(plan, compression, epoch=42), compression)

    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        members = tf.getmembers()
        assert tf.extractfile("app/sub/data.txt").read() == (src / "sub/data.txt").read_bytes()  # type: ignore[union-attr]
    assert [m.name for m in members] == [e.arcname for e in plan.entries]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 42)
        assert not {"atime", "ctime", "mtime"} & set(m.pax_headers)
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["app"] == (tarfile.DIRTYPE, 0o755)
    assert modes["app/run.sh"] == (tarfile.REGTYPE, 0o755)
    assert modes["app/lib.py"] == (tarfile.REGTYPE, 0o644)
    assert modes["app/link"] == (tarfile.SYMTYPE, 0o777)
    assert socket.gethostname().encode() not in raw


def test_layer_bytes_equal_what_tarfile_writes(tmp_path: Path) -> None:
    """The hand-written stream is byte-for-byte what tarfile produces for the same headers."""
    src = make_tree(tmp_path / "a")
    (src / "ünïcødé-名前.txt").write_text("x")
    (src / ("long-" * 40 + ".txt")).write_text("y")
    plan = scan(src, target="/app")

    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in plan.entries:
            info = tarfile.TarInfo(e.arcname)
            info.mode, info.mtime, info.uname, info.gname = e.mode, 7, "", ""
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.linkname
                tf.addfile(info)
            else:
                assert e.source is not None
                info.size = e.size
                with e.source.open("rb") as f:
                    tf.addfile(info, f)
    assert blob(plan, None, epoch=7) == expected.getvalue()
    assert plan.uncompressed_size == len(expected.getvalue())


def test_non_ascii_and_long_names_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.mkdir()
    names = ["ünïcødé-名前.txt", "d" * 150 + ".bin"]
    for name in names:
        (src / name).write_text(name)
    raw = blob(scan(src, target="/app"), None)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for name in names:
            assert tf.extractfile(f"app/{name}").read() == name.encode()  # type: ignore[union-attr]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_uncompressed_size_and_digests_match_the_stream(tmp_path: Path, compression: str | None) -> None:
    src = make_tree(tmp_path / "a")
    (src / "big.bin").write_bytes(os.urandom(COMPRESS_BLOCK + 12345))
    plan = scan(src, target="/app")
    data = blob(plan, compression)
    raw = decompress(data, compression)
    digests = measure(plan, compression=compression)

    assert len(raw) == plan.uncompressed_size == digests.uncompressed_size
    assert len(raw) % tarfile.RECORDSIZE == 0
    assert digests.size == len(data)
    assert digests.digest.hex == hashlib.sha256(data).hexdigest()
    assert digests.diff_id.hex == hashlib.sha256(raw).hexdigest()


def test_gzip_header_is_machine_independent(tmp_path: Path) -> None:
    plan = scan(make_tree(tmp_path / "a"), target="/app")
    for level, xfl in ((1, 4), (6, 0), (9, 2)):
        data = blob(plan, "gzip", level=level)
        # ID1 ID2 CM FLG, MTIME = 0, XFL, OS = 255 (unknown) — RFC 1952 §2.3
        assert data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255])
        raw = gzip.decompress(data)  # checks CRC32 and ISIZE
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        assert data[10:-8] == deflate.compress(raw) + deflate.flush()


def test_single_file_source(tmp_path: Path) -> None:
    weights = tmp_path / "w.onnx"
    weights.write_bytes(b"\x01" * 1000)
    plan = scan(weights, target="/models")
    assert [(e.arcname, e.kind) for e in plan.entries] == [
        ("models", "dir"),
        ("models/w.onnx", "file"),
    ]


def test_root_target_and_hard_links(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.mkdir()
    (src / "one").write_text("same")
    os.link(src / "one", src / "two")
    plan = scan(src, target="/")
    members = read_tar(blob(plan, None))
    assert [(m.name, m.type, m.size) for m in members] == [
        ("one", tarfile.REGTYPE, 4),
        ("two", tarfile.REGTYPE, 4),
    ]


# ------------------------------------------------------------------------------------- refusals


def test_excludes_match_relative_path_and_basename(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "a")
    plan = scan(src, target="/app", exclude=["*.pyc", "__pycache__", "sub/data.txt", "link"])
    names = [e.arcname for e in plan.entries]
    assert names == ["app", "app/lib.py", "app/run.sh", "app/sub", "app/sub/empty"]


def test_symlink_inside_is_kept_absolute_inside_is_made_relative(tmp_path: Path) -> None:
    src = tmp_path / "a"
    (src / "d").mkdir(parents=True)
    (src / "target.txt").write_text("t")
    (src / "d" / "rel").symlink_to("../target.txt")
    (src / "d" / "abs").symlink_to(src / "target.txt")
    (src / "dirlink").symlink_to("d")
    links = {e.arcname: e.linkname for e in scan(src, target="/app").entries if e.linkname}
    assert links == {
        "app/d/abs": "../target.txt",
        "app/d/rel": "../target.txt",
        "app/dirlink": "d",
    }


@pytest.mark.parametrize("link", ["/etc/passwd", "../../outside.txt"])
def test_symlink_outside_is_refused(tmp_path: Path, link: str) -> None:
    src = tmp_path / "bundle" / "src"
    src.mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("secret")
    (src / "leak").symlink_to(link)
    with pytest.raises(BundleSpecError, match="points outside the bundle directory") as info:
        scan(src, target="/app")
    assert info.value.file == str(src / "leak")
    assert "copy the file in or remove the link" in str(info.value)


def test_special_files_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(BundleSpecError, match="FIFO"):
        scan(src, target="/app")
    (src / "pipe").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "sock"))
        with pytest.raises(BundleSpecError, match="socket"):
            scan(src, target="/app")
    assert scan(src, target="/app", exclude=["sock"]).files == 0


def test_missing_source_and_bad_target(tmp_path: Path) -> None:
    with pytest.raises(BundleSpecError, match="does not exist"):
        scan(tmp_path / "nope", target="/app")
    with pytest.raises(BundleSpecError, match="target"):
        scan(tmp_path, target="/app/../etc")


@pytest.mark.parametrize("change", ["grow", "shrink", "touch", "delete"])
def test_file_changed_after_scan_is_detected(tmp_path: Path, change: str) -> None:
    src = tmp_path / "a"
    src.mkdir()
    path = src / "w.bin"
    path.write_bytes(b"\x00" * 10_000)
    plan = scan(src, target="/m")
    if change == "grow":
        path.write_bytes(b"\x00" * 10_001)
    elif change == "shrink":
        path.write_bytes(b"\x00" * 9_999)
    elif change == "touch":
        os.utime(path, ns=(1, 1))
    else:
        path.unlink()
    with pytest.raises(BundleSpecError, match="changed while the layer was being built"):
        measure(plan, compression=None)


# ----------------------------------------------------------------------------------- compression


def test_choose_compression(tmp_path: Path) -> None:
    random_dir = tmp_path / "random"
    random_dir.mkdir()
    (random_dir / "w1.bin").write_bytes(os.urandom(9 << 20))
    (random_dir / "w2.bin").write_bytes(os.urandom(5 << 20))
    (random_dir / "small.txt").write_text("tiny text")
    text_dir = tmp_path / "text"
    text_dir.mkdir()
    (text_dir / "vocab.txt").write_text("".join(f"token{i} {i}\n" for i in range(1_000_000)))
    random_plan = scan(random_dir, target="/m")
    text_plan = scan(text_dir, target="/m")

    assert choose_compression(random_plan, "auto") is None
    assert choose_compression(text_plan, "auto") == "gzip"
    assert choose_compression(random_plan, "gzip") == "gzip"
    assert choose_compression(random_plan, "zstd") == "zstd"
    assert choose_compression(text_plan, "none") is None
    assert choose_compression(scan(random_dir / "small.txt", target="/m"), "auto") == "gzip"
    with pytest.raises(ValueError, match="unknown compression"):
        choose_compression(text_plan, "brotli")


# ------------------------------------------------------------------------------------- memory

_MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from ecr_oci.bundle.layers import measure, scan, stream

    plan = scan(Path(sys.argv[1]), target="/models")
    measure(plan, compression="zstd")  # warm up imports and allocator with a tiny layer
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    big = scan(Path(sys.argv[2]), target="/models")
    for compression in (None, "gzip"):
        digests = measure(big, compression=compression)
        assert digests.uncompressed_size > 256 << 20
    for _ in stream(big, compression=None):
        pass
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
    """
)


def test_memory_stays_flat_for_a_large_layer(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (small / "x").write_text("x")
    big = tmp_path / "big"
    big.mkdir()
    with (big / "zeros.bin").open("wb") as f:
        f.truncate(256 << 20)  # sparse: no disk, same bytes to read
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(small), str(big)],
        check=True,
        capture_output=True,
        text=True,
    )
    growth = int(out.stdout.strip())
    assert growth < 50 << 20, f"peak RSS grew by {growth / 2**20:.1f} MiB"


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.mkdir()
    (src / "x").symlink_to("y")
    (src / "y").symlink_to("x")
    with pytest.raises(BundleSpecError, match="symlink loop"):
        scan(src, target="/app")


def test_exclude_ignores_leading_and_trailing_slashes(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "a")
    plan = scan(src, target="/app", exclude=["/sub/", "*.pyc", "link"])
    assert [e.arcname for e in plan.entries] == ["app", "app/lib.py", "app/run.sh"]
