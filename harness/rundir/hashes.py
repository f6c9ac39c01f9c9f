"""Content hashes of data files (``hashlib.blake2b``), and the persistent cache that keeps a re-run fast.

The cache maps (absolute path, size, mtime_ns, ctime_ns, inode) to a file's hash; a file whose five keys all
match was hashed before and has not been touched since (a rewrite changes ``ctime`` even when it keeps the size
and the mtime). It is never the identity: a miss (a dataset staged to a node's local disk with ``cp -r``, new
inodes and times) hashes the bytes again and gives the same hashes. A file changed less than
:data:`RACY_S` seconds ago is hashed but not cached (a second write within a coarse timestamp's tick would
otherwise keep its keys).

Where the cache lives: ``$HARNESS_HASH_CACHE`` (a file path; ``off`` turns it off), else
``$XDG_CACHE_HOME/dml-harness/file-hashes.sqlite3`` (``~/.cache/...``). It is one SQLite file in rollback-journal
mode (no WAL: home directories are often on NFS), written in one short transaction per fingerprint; several
processes may share it. It is never required: a read-only or full home, a locked or damaged file, and the run
goes on without it (one debug line).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import stat as statmod
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "HARNESS_HASH_CACHE"
RACY_S = 2.0  # a file changed this recently is not cached (coarse timestamps)
CHUNK = 1 << 20
DIGEST_SIZE = 32  # bytes of each file's blake2b
ABSENT = "absent"
BATCH = 900  # SQLite's default limit on bound parameters is 999


@dataclass(frozen=True)
class Stat:
    """The cache's keys of a file besides its path."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path) -> Stat | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def hash_file(path) -> str:
    """The blake2b (32 bytes, hex) of a file's bytes."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def default_cache_path() -> Path | None:
    where = os.environ.get(CACHE_ENV)
    if where is not None:
        return None if where.strip().lower() in ("", "off", "0", "none") else Path(where).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dml-harness" / "file-hashes.sqlite3"


class HashCache:
    """The SQLite cache of file hashes (see the module docstring); every failure turns it off, never the run."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None

    @contextlib.contextmanager
    def _connect(self):
        con = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=10)
            con.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                "ctime_ns INTEGER, inode INTEGER, digest TEXT)"
            )
            yield con
            con.commit()
        finally:
            if con is not None:
                con.close()

    def get_many(self, stats: dict) -> dict:
        """{path: digest} of the paths whose cached keys equal ``stats[path]``."""
        if self.path is None or not stats:
            return {}
        found = {}
        try:
            with self._connect() as con:
                paths = list(stats)
                for i in range(0, len(paths), BATCH):
                    chunk = paths[i : i + BATCH]
                    rows = con.execute(
                        "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM files WHERE path IN "
                        f"({','.join('?' * len(chunk))})",
                        chunk,
                    )
                    for path, size, mtime_ns, ctime_ns, inode, digest in rows:
                        if stats[path] == Stat(size, mtime_ns, ctime_ns, inode):
                            found[path] = digest
        except (sqlite3.Error, OSError) as err:
            self._off(err)
            return {}
        return found

    def put_many(self, entries: list) -> None:
        """Store (path, Stat, digest) entries, leaving out files changed in the last RACY_S seconds."""
        now = time.time_ns()
        rows = [
            (path, st.size, st.mtime_ns, st.ctime_ns, st.inode, digest)
            for path, st, digest in entries
            if now - max(st.mtime_ns, st.ctime_ns) > RACY_S * 1e9
        ]
        if self.path is None or not rows:
            return
        try:
            with self._connect() as con:
                con.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as err:
            self._off(err)

    def _off(self, err: Exception) -> None:
        log.debug("file-hash cache %s not used (%s: %s); hashing without it", self.path, type(err).__name__, err)
        self.path = None


def file_hashes(paths, cache: HashCache | None = None, trusted: dict | None = None, workers: int | None = None):
    """{absolute path: blake2b hex, or ``absent``} of ``paths``; ``trusted`` maps a path to a (Stat, digest) a
    manifest gives (used when the file's size and mtime still match), the cache serves files hashed before, and
    the rest are read (on ``workers`` threads: blake2b releases the GIL)."""
    cache = cache if cache is not None else HashCache(default_cache_path())
    stats = {}
    out = {}
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not statmod.S_ISREG(st.st_mode):
            out[path] = ABSENT
        else:
            stats[path] = Stat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    for path, (stated, digest) in (trusted or {}).items():
        st = stats.get(path)
        if st is not None and (st.size, st.mtime_ns) == (stated.size, stated.mtime_ns):
            out[path] = digest
    out.update(cache.get_many({p: s for p, s in stats.items() if p not in out}))
    todo = [p for p in stats if p not in out]
    if todo:
        workers = max(1, min(workers or min(8, os.cpu_count() or 1), len(todo)))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # one slice per thread: no future per file
            slices = list(pool.map(_hash_all, [todo[i::workers] for i in range(workers)]))
        digests = [None] * len(todo)
        for i, part in enumerate(slices):
            digests[i::workers] = part
        out.update(zip(todo, digests))
        cache.put_many([(p, stats[p], d) for p, d in zip(todo, digests) if d != ABSENT])
    return out


def _hash_all(paths: list) -> list:
    out = []
    for path in paths:
        try:
            out.append(hash_file(path))
        except OSError:  # removed or unreadable while hashing: not data the run can read
            out.append(ABSENT)
    return out
