"""A local cache of layer digests, so an unchanged 1 GiB model is not re-read on every push.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from ecr_oci.bundle.layers import scan
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = (tmp / "model").mkdir(), (tmp / "model" / "w.bin").write_bytes(b"0" * 4096)
    >>> cache = LayerCache(tmp / "layers.db")
    >>> plan = scan(tmp / "model", target="/models")
    >>> first = measure_cached(plan, cache, compression=None)
    >>> measure_cached(plan, cache, compression=None) == first   # answered from the cache
    True

The key is :meth:`~ecr_oci.bundle.layers.LayerPlan.fingerprint`: every entry's name, mode, size,
mtime_ns, inode and device plus the layer options (issue 2 part 5: "a local digest cache (path,
size, mtime, inode) avoids re-hashing unchanged large files"). Like ``git``'s index it trusts stat;
a file rewritten in place with the same size and a restored mtime is not noticed, but the upload
is still safe: the registry checks the digest of what it receives, and
:func:`~ecr_oci.bundle.layers.stream` refuses a file whose size or mtime changed since the scan.

Storage is one SQLite file in WAL mode (standard library, safe with several ``ecr-oci`` processes
at once). The cache is an optimisation only: a corrupt, unreadable or locked file never makes a push
fail — a corrupt file is deleted and rebuilt, other failures just mean a miss. The caller chooses
the path (the CLI uses ``~/.cache/ecr-oci/layers.db``); this module reads no environment.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ecr_oci.bundle.layers import (
    LayerDigests,
    LayerPlan,
    choose_compression,
    default_level,
    measure,
)
from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    fingerprint TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    diff_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    uncompressed_size INTEGER NOT NULL,
    compression TEXT,
    files INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS choices (
    fingerprint TEXT PRIMARY KEY,
    compression TEXT NOT NULL
);
"""
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_BUSY_TIMEOUT_S = 10.0


class LayerCache:
    """fingerprint → :class:`~ecr_oci.bundle.layers.LayerDigests`, in a SQLite file at ``path``.

    Never raises for cache trouble: :meth:`get` answers ``None`` and :meth:`put` does nothing when
    the file cannot be used. Each call opens its own connection, so one instance can be shared
    between threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._usable = True
        self._ready = False

    def get(self, fingerprint: str) -> LayerDigests | None:
        """The digests stored under ``fingerprint``, or ``None`` (miss, or cache unusable)."""
        row = self._run(
            lambda db: db.execute(
                "SELECT digest, diff_id, size, uncompressed_size, compression, files "
                "FROM layers WHERE fingerprint = ?",
                (fingerprint,),
            ).fetchone()
        )
        return None if row is None else _from_row(tuple(row))

    def put(self, fingerprint: str, digests: LayerDigests) -> None:
        """Store ``digests`` under ``fingerprint`` (replacing any older value)."""
        row = (
            fingerprint,
            str(digests.digest),
            str(digests.diff_id),
            digests.size,
            digests.uncompressed_size,
            digests.compression,
            digests.files,
        )
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO layers VALUES (?,?,?,?,?,?,?)", row))

    def get_choice(self, fingerprint: str) -> str | None:
        """A stored :func:`~ecr_oci.bundle.layers.choose_compression` answer: gzip, zstd, none."""
        row = self._run(
            lambda db: db.execute(
                "SELECT compression FROM choices WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
        )
        value = None if row is None else row[0]
        return value if value in ("gzip", "zstd", "none") else None

    def put_choice(self, fingerprint: str, compression: str | None) -> None:
        """Remember the compression chosen for the files behind ``fingerprint``."""
        row = (fingerprint, compression or "none")
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO choices VALUES (?, ?)", row))

    def _run(self, action: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """Run ``action`` in a transaction; ``None`` when the cache cannot be used.

        SQLite and OS errors are logged and swallowed; a corrupt file is removed so that the next
        call starts a fresh one.
        """
        if not self._usable:
            return None
        db: sqlite3.Connection | None = None
        try:
            db = self._open()
            with db:
                return action(db)
        except sqlite3.DatabaseError as err:
            self._failed(err)
        except OSError as err:
            log.warning("layer cache %s unusable, not caching: %s", self.path, err)
            self._usable = False
        finally:
            if db is not None:
                db.close()
        return None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
        try:
            if not self._ready:
                # WAL: readers never block the writer of another process (sqlite.org/wal.html).
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.commit()
                self._ready = True
        except BaseException:
            db.close()
            raise
        return db

    def _failed(self, err: sqlite3.DatabaseError) -> None:
        code = getattr(err, "sqlite_errorcode", None)
        if code in _CORRUPT or "not a database" in str(err) or "malformed" in str(err):
            log.warning("layer cache %s is corrupt (%s); starting a new one", self.path, err)
            self._ready = False
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{self.path}{suffix}").unlink()
        else:  # locked past the timeout, read-only, disk full …: a miss, try again next time
            log.warning("layer cache %s not used for this call: %s", self.path, err)


def _from_row(row: tuple[object, ...]) -> LayerDigests | None:
    digest, diff_id, size, uncompressed_size, compression, files = row
    if not (
        isinstance(digest, str)
        and isinstance(diff_id, str)
        and isinstance(size, int)
        and isinstance(uncompressed_size, int)
        and isinstance(files, int)
        and compression in (None, "gzip", "zstd")
    ):
        return None
    try:
        return LayerDigests(
            digest=Digest.parse(digest),
            diff_id=Digest.parse(diff_id),
            size=size,
            uncompressed_size=uncompressed_size,
            compression=compression if isinstance(compression, str) else None,
            files=files,
        )
    except InvalidReferenceError:
        return None


def measure_cached(
    plan: LayerPlan,
    cache: LayerCache | None,
    *,
    compression: str | None,
    level: int | None = None,
    epoch: int = 0,
) -> LayerDigests:
    """:func:`~ecr_oci.bundle.layers.measure`, answered from ``cache`` when the files are unchanged.

    With ``cache=None`` it simply measures. Raises what ``measure`` raises (``BundleSpecError`` for
    a file that changed during the build, ``ValueError`` for bad options); cache trouble never
    raises.
    """
    if cache is None:
        return measure(plan, compression=compression, level=level, epoch=epoch)
    fingerprint = plan.fingerprint(compression, default_level(compression, level), epoch)
    hit = cache.get(fingerprint)
    if hit is not None and hit.uncompressed_size == plan.uncompressed_size:
        return hit
    digests = measure(plan, compression=compression, level=level, epoch=epoch)
    cache.put(fingerprint, digests)
    return digests


def choose_compression_cached(plan: LayerPlan, cache: LayerCache | None, requested: str) -> str | None:
    """:func:`~ecr_oci.bundle.layers.choose_compression`, remembering ``auto`` decisions.

    Sampling a big model reads 3 MiB and compresses it; a no-op re-push should not
    pay that again, so the answer is cached under the files' fingerprint like the digests are.
    Raises what ``choose_compression`` raises; cache trouble never raises.
    """
    if cache is None or requested != "auto":
        return choose_compression(plan, requested)
    fingerprint = plan.fingerprint("auto", 0, 0)
    stored = cache.get_choice(fingerprint)
    if stored is not None:
        return None if stored == "none" else stored
    chosen = choose_compression(plan, requested)
    cache.put_choice(fingerprint, chosen)
    return chosen
