"""One writer per run directory: an OS lock held for the run's life.

``with run_lock(run_dir): ...`` takes an exclusive ``flock`` on ``<run dir>/.lock`` (NFS v4 maps it onto a
POSIX byte-range lock, so it holds across hosts of a shared file system). The kernel releases it when the
process ends, however it ends (kill -9, out of memory, a SLURM pre-emption): a lock is never left stale.
The file also says who holds it (host, pid, start time) for the one line a second process prints.

A second process on the same run directory (two people typing the same command, a requeued SLURM job whose
first instance still runs) WAITS for the lock, saying once who holds it, and then does what the run would
have done: skip it when the first finished it, resume from its checkpoint when it did not. Waiting, not
exiting, because a requeued job that exited would be reported failed and its run lost; and nothing is
written to the directory before the lock is held, so two writers never interleave. ``timeout`` (seconds)
bounds the wait; then :class:`RunLocked`, one line naming the holder, is raised (``timeout=0``: at once).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from harness.errors import HarnessError

LOCK_FILE = ".lock"
POLL_S = 0.5

log = logging.getLogger(__name__)


class RunLocked(HarnessError):
    """Another process holds the run directory (the message names its host, pid and start time)."""


def holder(run_dir) -> dict:
    """Who holds (or last held) the lock of ``run_dir``: {host, pid, started}, or {} when unknown."""
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    if not info:
        return "another process (it has not yet written its name)"
    return f"pid {info.get('pid')} on {info.get('host')} (since {info.get('started')})"


@contextmanager
def run_lock(run_dir, timeout: float | None = None, poll: float = POLL_S):
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the body; see the module docstring."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _acquire(fd, run_dir, timeout, poll)
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield info
    finally:
        os.close(fd)  # releases the lock (the kernel does the same if the process dies first)


def _acquire(fd: int, run_dir: Path, timeout: float | None, poll: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    time.sleep(min(poll, 0.1))  # let the holder write its name
    who = describe(holder(run_dir))
    if timeout is not None and timeout <= 0:
        raise RunLocked(f"{run_dir} is being written by {who}; wait for it to end (or stop it) and run again")
    log.warning("waiting for %s: it is being written by %s", run_dir, who)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            log.info("lock of %s acquired after waiting", run_dir)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                raise RunLocked(
                    f"{run_dir} is still being written by {describe(holder(run_dir))} after "
                    f"{timeout:g} s; wait for it to end (or stop it) and run again"
                ) from None
            time.sleep(poll)
