"""The selected trackers as one: every call fans out to each of them, in one place that

* keeps going when a tracker fails (server down, no network): one warning naming it, then the run goes on
  without it; ``epochs.jsonl`` and ``record.json`` stay the source of truth;
* logs each step once across restarts: ``<run dir>/trackers.json`` holds the last epoch each tracker has
  taken. A resumed run re-trains the epochs after its checkpoint; rows a tracker already has are not sent
  again, and rows it lacks (it failed last time, or is new on resume) are sent from ``epochs.jsonl`` when
  the first new row arrives (the loop has then cut the file back to its checkpoint) or at the record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.io import atomic_write_text
from harness.rundir import records
from harness.rundir.checkpoint import LAST
from harness.tracking.base import Tracker

log = logging.getLogger(__name__)
MARKS = "trackers.json"


class Trackers:
    def __init__(self, trackers: dict):
        self.trackers: dict[str, Tracker] = dict(trackers)
        self.failed: set = set()
        self.marks: dict = {}
        self.run_dir: Path | None = None
        self.caught_up = False

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, run_dir: Path, config: dict, tags: dict, resumed_from_epoch="auto") -> None:
        """Open every tracker's run. ``resumed_from_epoch="auto"``: what the run directory says, the last epoch of
        epochs.jsonl when a checkpoint is there to resume from, else None (a fresh start)."""
        if not self.trackers:
            return
        self.run_dir = Path(run_dir)
        if resumed_from_epoch == "auto":
            resumed_from_epoch = None
            if (self.run_dir / "checkpoints" / LAST).exists():
                resumed_from_epoch = max((r["epoch"] for r in records.read_epochs(self.run_dir)), default=None)
        self.marks = read_marks(self.run_dir)
        self.caught_up = False
        for name, tracker in self.trackers.items():
            ok, held = self._call(name, "start", tracker.start, self.run_dir, config, tags, resumed_from_epoch)
            if ok and held is not None:  # the tracker's own account of what it holds wins
                self.marks[name] = int(held)

    def catch_up(self, before: int | None = None) -> None:
        """Send the rows of epochs.jsonl (before epoch ``before``) that a tracker has not taken yet."""
        self.caught_up = True
        for row in records.read_epochs(self.run_dir):
            if before is None or row["epoch"] < before:
                self.log_epoch(row)

    def log_epoch(self, row: dict) -> None:
        if not self.trackers:
            return
        step, sent = int(row["epoch"]), False
        if not self.caught_up:
            self.catch_up(before=step)
        for name, tracker in self.trackers.items():
            if step > self.marks.get(name, -1) and self._call(name, "log_epoch", tracker.log_epoch, row)[0]:
                self.marks[name] = step
                sent = True
        if sent:
            atomic_write_text(self.run_dir / MARKS, json.dumps(self.marks, sort_keys=True) + "\n")

    def log_record(self, record: dict) -> None:
        if not self.trackers:
            return
        if not self.caught_up:
            self.catch_up()
        logged = frozenset(key for row in records.read_epochs(self.run_dir) for key in row)
        for name, tracker in self.trackers.items():
            self._call(name, "log_record", tracker.log_record, record, logged)

    def log_images(self, paths, step: int) -> None:
        paths = [Path(p) for p in paths]
        if paths:
            for name, tracker in self.trackers.items():
                self._call(name, "log_images", tracker.log_images, paths, int(step))

    def close(self, record: dict, pictures=()) -> None:
        """The end of a run: its record, its pictures (at its last epoch), and its status."""
        self.log_record(record)
        self.log_images(pictures, step=int(record.get("epochs") or 0))
        self.finish(str(record.get("status")))

    def finish(self, status: str) -> None:
        for name, tracker in self.trackers.items():
            self._call(name, "finish", tracker.finish, status)

    def _call(self, name: str, what: str, fn, *args) -> tuple:
        """(True, ``fn(*args)``), or (False, None) when the tracker failed, now or earlier in the run."""
        if name in self.failed:
            return False, None
        try:
            return True, fn(*args)
        except Exception as err:  # a tracker never stops the run
            self.failed.add(name)
            log.warning(
                "tracker %s failed in %s (%s: %s); the run goes on without it (epochs.jsonl and "
                "record.json hold everything)",
                name,
                what,
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
            )
            if what != "finish":
                try:
                    self.trackers[name].finish("failed")
                except Exception:
                    pass
            return False, None


def read_marks(run_dir: Path) -> dict:
    try:
        marks = json.loads((Path(run_dir) / MARKS).read_text())
        return {str(k): int(v) for k, v in marks.items()} if isinstance(marks, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def build_trackers(nodes, instantiate) -> Trackers:
    """The trackers of a ``logger`` config node (``{name: {_target_: ...}}``; empty or None: none)."""
    return Trackers({str(name): instantiate(node) for name, node in (nodes or {}).items()})
