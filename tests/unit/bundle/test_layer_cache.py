"""The layer digest cache: hits skip reading, it trusts stat, and a broken file is never fatal."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from ecr_oci.bundle.layer_cache import LayerCache, choose_compression_cached, measure_cached
from ecr_oci.bundle.layers import LayerDigests, measure, scan
from ecr_oci.digest import Digest


def model_dir(root: Path, content: bytes = b"weights-v1" * 1000) -> Path:
    root.mkdir()
    (root / "w.bin").write_bytes(content)
    return root


def sample_digests(n: int = 1) -> LayerDigests:
    return LayerDigests(
        digest=Digest.of(b"blob%d" % n),
        diff_id=Digest.of(b"tar%d" % n),
        size=10 * n,
        uncompressed_size=10240,
        compression="gzip",
        files=n,
    )


def test_put_get_round_trip(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "deep" / "dir" / "layers.db")
    assert cache.get("f" * 64) is None
    cache.put("f" * 64, sample_digests())
    assert cache.get("f" * 64) == sample_digests()
    cache.put("f" * 64, sample_digests(2))
    assert LayerCache(cache.path).get("f" * 64) == sample_digests(2)
    uncompressed = LayerDigests(Digest.of(b"x"), Digest.of(b"x"), 1, 1, None, 0)
    cache.put("0" * 64, uncompressed)
    assert cache.get("0" * 64) == uncompressed


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_cache_hit_trusts_stat_and_does_not_read(tmp_path: Path, compression: str | None) -> None:
    src = model_dir(tmp_path / "model")
    cache = LayerCache(tmp_path / "layers.db")
    first = measure_cached(scan(src, target="/models"), cache, compression=compression)
    assert first == measure(scan(src, target="/models"), compression=compression)

    # Rewrite the file in place: same inode, same size, mtime restored. Only reading the file could
    # notice; the cache answers with the old digest, so it did not read it.
    weights = src / "w.bin"
    st = weights.stat()
    with weights.open("r+b") as f:
        f.write(b"WEIGHTS-V2" * 1000)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_ino == st.st_ino

    plan = scan(src, target="/models")
    assert measure_cached(plan, cache, compression=compression) == first
    assert measure(plan, compression=compression) != first
    assert measure_cached(plan, None, compression=compression) != first


def test_options_and_stat_changes_miss(tmp_path: Path) -> None:
    src = model_dir(tmp_path / "model")
    cache = LayerCache(tmp_path / "layers.db")
    plan = scan(src, target="/models")
    gz6 = measure_cached(plan, cache, compression="gzip")
    assert measure_cached(plan, cache, compression="gzip", level=6) == gz6
    assert measure_cached(plan, cache, compression="gzip", level=1) != gz6
    assert measure_cached(plan, cache, compression="gzip", epoch=5) != gz6
    assert measure_cached(plan, cache, compression="zstd") != gz6

    (src / "w.bin").write_bytes(b"weights-v2" * 1000)  # new mtime → miss → new digest
    changed = measure_cached(scan(src, target="/models"), cache, compression="gzip")
    assert changed != gz6
    assert changed == measure(scan(src, target="/models"), compression="gzip")


def test_fingerprint_covers_name_mode_and_inode(tmp_path: Path) -> None:
    src = model_dir(tmp_path / "model")
    base = scan(src, target="/models").fingerprint("gzip", 6, 0)
    assert scan(src, target="/models").fingerprint("gzip", 6, 0) == base
    assert scan(src, target="/other").fingerprint("gzip", 6, 0) != base
    (src / "w.bin").chmod(0o755)
    assert scan(src, target="/models").fingerprint("gzip", 6, 0) != base
    (src / "w.bin").chmod(0o644)
    copy = src / "w.copy"
    copy.write_bytes((src / "w.bin").read_bytes())
    st = (src / "w.bin").stat()
    copy.replace(src / "w.bin")  # new inode, same content
    os.utime(src / "w.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan(src, target="/models").fingerprint("gzip", 6, 0) != base


@pytest.mark.parametrize(
    "garbage",
    [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 5000, b""],
)
def test_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "layers.db"
    path.write_bytes(garbage)
    src = model_dir(tmp_path / "model")
    plan = scan(src, target="/models")
    cache = LayerCache(path)

    digests = measure_cached(plan, cache, compression="gzip")  # must not raise
    assert digests == measure(plan, compression="gzip")
    assert measure_cached(plan, cache, compression="gzip") == digests
    assert LayerCache(path).get(plan.fingerprint("gzip", 6, 0)) == digests


def test_invalid_rows_are_misses(tmp_path: Path) -> None:
    path = tmp_path / "layers.db"
    cache = LayerCache(path)
    cache.put("a" * 64, sample_digests())
    with sqlite3.connect(path) as db:
        db.execute("UPDATE layers SET digest = 'md5:nope'")
    db.close()
    assert cache.get("a" * 64) is None


def test_unusable_location_is_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = LayerCache(blocker / "layers.db")
    cache.put("a" * 64, sample_digests())
    assert cache.get("a" * 64) is None
    src = model_dir(tmp_path / "model")
    plan = scan(src, target="/models")
    assert measure_cached(plan, cache, compression=None) == measure(plan, compression=None)


def _writer(path: str, start: int) -> None:
    cache = LayerCache(Path(path))
    for i in range(start, start + 50):
        cache.put(f"{i:064x}", sample_digests(i))


def test_concurrent_processes_share_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "layers.db"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), k * 50)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    cache = LayerCache(path)
    assert all(cache.get(f"{i:064x}") == sample_digests(i) for i in range(200))


def test_auto_compression_choice_is_cached(tmp_path: Path) -> None:
    src = tmp_path / "model"
    src.mkdir()
    weights = src / "w.bin"
    weights.write_bytes(os.urandom(2 << 20))
    cache = LayerCache(tmp_path / "layers.db")
    assert choose_compression_cached(scan(src, target="/m"), cache, "auto") is None

    # Same stat, compressible content now: the cached answer comes back without sampling.
    st = weights.stat()
    weights.write_bytes(b"\x00" * (2 << 20))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    plan = scan(src, target="/m")
    assert choose_compression_cached(plan, cache, "auto") is None
    assert choose_compression_cached(plan, None, "auto") == "gzip"
    assert choose_compression_cached(plan, cache, "zstd") == "zstd"
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert choose_compression_cached(scan(src, target="/m"), cache, "auto") == "gzip"
