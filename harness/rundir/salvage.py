"""Never wedged: a damaged file in a run directory is named, moved aside, and the work it held is done again.

A truncated ``checkpoints/last.pt`` (a disk that filled, a copy cut short) or a binary or stub ``record.json``
would otherwise fail every re-run of the same command. Instead the run logs one line naming the file and
why it cannot be used, renames it to ``<name>.corrupt`` (``.corrupt.1``, ... if that exists: nothing is
deleted, the evidence stays), and starts that run again (a record) or from the start (a checkpoint).
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.rundir.records import Corrupt, parse_record

log = logging.getLogger(__name__)


def set_aside(path: Path, reason: str, then: str) -> Path:
    """Rename ``path`` to ``<name>.corrupt[.N]`` and log one line (why, where it went, what happens ``then``)."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    path.rename(target)
    log.warning("%s is unusable (%s): moved aside to %s; %s", path, reason, target.name, then)
    return target


def read_record_or_set_aside(path: Path) -> dict | None:
    """A usable record, or None (none there, or a damaged one moved aside: the run is done again)."""
    try:
        return parse_record(path)
    except Corrupt as err:
        set_aside(path, str(err), "the run starts again")
        return None


def load_checkpoint_or_set_aside(path: Path, load):
    """``load(path)``, or None when it is absent or damaged (then moved aside: training starts from the start)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as err:  # noqa: BLE001 - zip, pickle and torch errors differ by the damage
        set_aside(path, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}", "training starts from the start")
        return None
