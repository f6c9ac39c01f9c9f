"""Never wedged: a damaged file in a run directory is named, moved aside, and the work it held is done again.

A truncated ``checkpoints/last.pt`` or ``checkpoints/best.pt`` (a disk that filled, a copy cut short) or a
binary or stub ``record.json`` would otherwise fail every re-run of the same command. Instead the run logs one
line naming the file and why it cannot be used, renames it to ``<name>.corrupt`` (``.corrupt.1``, ... if that
exists: nothing is deleted, the evidence stays), and does that work again: the run starts again (a record),
training starts from the start (``last.pt``), or the selected epoch is trained again (``best.pt``:
harness/training/reselect.py).
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


def load_checkpoint_or_set_aside(path: Path, load, then: str = "training starts from the start"):
    """``load(path)``, or None when it is absent or damaged (then moved aside, one line saying what happens
    ``then``); ``load`` may raise :class:`Corrupt` for a file that reads but holds the wrong thing."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as err:  # noqa: BLE001 - zip, pickle and torch errors differ by the damage
        reason = str(err) if isinstance(err, Corrupt) else f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
        set_aside(path, reason, then)
        return None
