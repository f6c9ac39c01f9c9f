"""A journal storage that a torn append never wedges.

A worker killed mid-append (or a full disk) leaves a partial last line in ``study.journal``. Optuna skips a
last line without its newline, but the next append is written right after it: the two become one line that
is not JSON, and from then on every trial and every ``python -m harness.search DIR`` fail with a
``JSONDecodeError``. So every time the journal's lock is taken (:class:`RepairingOpenLock`: before each
append, and once when the storage is opened), and only then (workers append concurrently), a torn journal is
repaired: it is copied aside (``study.journal.torn[.N]``: nothing is lost), the torn tail (and any line that
is not JSON) is dropped, one warning says so, and the search goes on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

from optuna.storages.journal import JournalFileOpenLock

log = logging.getLogger(__name__)


class RepairingOpenLock(JournalFileOpenLock):
    """Optuna's open-lock (O_EXCL lock file, safe on NFSv3+) that repairs a torn journal tail once it holds the
    lock: a cheap look at the last byte before each append; every line is read when the storage is opened."""

    def __init__(self, filepath: str, grace_period: int | None = 30):
        super().__init__(filepath, grace_period)
        self.journal = Path(filepath)

    def acquire(self) -> bool:
        acquired = super().acquire()
        repair_journal(self.journal, full=False)
        return acquired

    def check_all(self) -> None:
        """Take the lock and read every line of the journal, repairing it when it is torn (a study directory this
        process cannot write is read as it is: nothing can be appended to it from here either)."""
        try:
            super().acquire()
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            log.debug("%s is not writable here (%s): read as it is", self.journal, err.strerror)
            return
        try:
            repair_journal(self.journal, full=True)
        finally:
            self.release()


def repair_journal(path: Path, full: bool) -> bool:
    """Drop the torn tail of ``path`` (after a copy aside), under the caller's lock; whether it was torn.
    ``full``: every line must be JSON (else only a last line without its newline is torn)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    if not full:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return False
    data = path.read_bytes()
    *lines, tail = data.split(b"\n")
    good = [line for line in lines if is_json(line)]
    dropped = len(lines) - len(good)
    if not tail and not dropped:
        return False
    aside = path.with_name(path.name + ".torn")
    n = 0
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.torn.{n}")
    shutil.copy2(path, aside)
    if dropped:  # lines in the middle that are not JSON (merged by an earlier version): rewrite without them
        tmp = path.with_name(path.name + ".repair")
        tmp.write_bytes(b"".join(line + b"\n" for line in good))
        os.replace(tmp, path)
    else:  # only the tail: cut it off in place (the offsets of the lines before it stay valid)
        os.truncate(path, len(data) - len(tail))
    log.warning(
        "%s had a torn last line (%d bytes%s: a worker killed or a full disk mid-append); a copy is at %s, "
        "the torn part was dropped and the search goes on",
        path,
        len(tail),
        f", and {dropped} lines that were not JSON" if dropped else "",
        aside.name,
    )
    return True


def is_json(data: bytes) -> bool:
    """Whether one journal line is JSON (Optuna's log entries; no run directory's file)."""
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
