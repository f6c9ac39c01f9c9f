"""Atomic writes: every file the harness writes appears whole or not at all.

A write goes to a temporary file in the destination's folder (``.<name>.<random>.tmp``), which is flushed
and ``fsync``-ed, renamed over the destination, and the folder is ``fsync``-ed so the rename survives a
crash. The file gets the permissions the user's umask gives (``mkstemp`` alone would leave 0600,
unreadable to collaborators sharing a results tree). A process killed mid-write leaves only a temporary
file, which :func:`remove_orphans` deletes the next time the run directory is opened.

A disk that refuses a write (read-only, full, over quota, forbidden: :data:`DISK_ERRORS`) is one line for the
user, naming the file and the fix (:func:`disk_line`), in every command that writes.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.redact import redact_text

TMP_SUFFIX = ".tmp"
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_line(err: OSError, fix: str, where: str | None = None) -> str:
    """One line for a disk that refused a write: what, where (the file, else ``where``), and ``fix``."""
    where = err.filename or where or "the output folder"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk of {where}; free space there, or {fix}"
    return f"cannot write {where} ({err.strerror}); {fix}"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` writes a temporary file beside ``path`` (given its path); it is then moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Every text file goes through the one redaction (harness.redact): no secret reaches the disk."""
    text = redact_text(text)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(o):
    """JSON for numpy / torch scalars and paths."""
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_orphans(folder: Path) -> list:
    """Delete the temporary files that killed writes left in ``folder`` (not recursive); return their paths.
    Only the run directory's single writer calls this, so no write of another process is in flight."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    orphans = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in orphans:
        p.unlink(missing_ok=True)
    return orphans
