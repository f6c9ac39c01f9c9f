"""One attempt at a run: ``with rd.attempt(cfg, world) as attempt``, the run directory's one writer.

enter   rank 0 takes the directory's lock (harness.rundir.lock: a second process waits, then skips or resumes),
        checks its identity and reads the previous record (a damaged one is set aside); the other ranks follow
        its decisions. A finished run (and no ``trainer.rerun``) is skipped: ``attempt.skipped``, and
        ``attempt.record`` is its record. Otherwise the attempt opens the directory: config.yaml, overrides.txt,
        run.log, and the trackers of ``cfg.logger`` (rank 0 alone reports to them).
begin   everything is built: config.yaml again, completed, and the trackers start
write_epoch / truncate_epochs     epochs.jsonl, and each row to the trackers
finish  record.json ``finished`` (status last), then the pictures, then the trackers close
exit    a failure anywhere in the block (build included) leaves error.txt and a ``failed`` record, never one that
        looks finished; ``RunPruned`` (an Optuna pruner) a ``pruned`` record, and the block ends quietly; a
        read-only or full results disk one line naming the fix (ResultsDiskError)
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from harness.config import instantiate
from harness.distributed import World, barrier, broadcast_object, lost_peer, on_main
from harness.errors import ResultsDiskError, RunPruned
from harness.evaluation.faiss_build import faiss_build
from harness.provenance import git_state, task_overrides
from harness.rundir import records, writer
from harness.rundir.lock import run_lock
from harness.rundir.runlog import logging_to
from harness.rundir.salvage import read_record_or_set_aside
from harness.tracking import Trackers, build_trackers, run_tags

if TYPE_CHECKING:
    from harness.rundir.run_dir import RunDir

log = logging.getLogger(__name__)


class Attempt:
    def __init__(self, rd: RunDir, cfg: DictConfig, world: World):
        self.rd, self.cfg, self.world = rd, cfg, world
        self.record: dict | None = None
        self.skipped = False
        self.device = None  # known once the parts are built
        self.trackers = Trackers({})
        self.started = time.time()
        self._open = contextlib.ExitStack()

    @property
    def path(self):
        return self.rd.path

    @property
    def checkpoints(self):
        return self.rd.path / "checkpoints"

    # ------------------------------------------------------------------------------------------- the block
    def __enter__(self) -> Attempt:
        try:
            if self.world.is_main:
                if not self.path.exists():  # refused before the lock creates the directory: nothing is left behind
                    self.rd.check_no_earlier_version()
                self._open.enter_context(run_lock(self.path))
            previous = on_main(self._previous, self.world)  # rank 0 reads; every rank takes its answer or error
            if self.rd.skips(previous, bool(self.cfg.trainer.rerun)):
                log.info("already finished, skipped: %s", self.path)
                self.skipped, self.record = True, previous
                return self
            if previous and previous.get("status") == "finished":  # trainer.rerun: train from scratch
                if self.world.is_main:
                    shutil.rmtree(self.checkpoints, ignore_errors=True)
                barrier(self.world)
            self.started = time.time()
            if self.world.is_main:
                self.trackers = build_trackers(self.cfg.get("logger"), instantiate)
                writer.open_attempt(self.path, self.cfg)
                self._open.enter_context(logging_to(self.path / "run.log"))
        except BaseException as exc:
            self._open.close()
            line = disk_error(exc)
            if line is not None:
                raise line from None
            raise
        return self

    def _previous(self) -> dict | None:
        self.rd.check_identity()
        return read_record_or_set_aside(self.path / records.RECORD)

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            if exc is None or self.skipped:
                return False
            if isinstance(exc, RunPruned):
                log.info("pruned at epoch %d: %s", exc.epoch, self.path)
                if self.world.is_main:
                    self.record = self._close("pruned", {"pruned_epoch": exc.epoch})
                    self.trackers.close(self.record)
                return True
            error = lost_peer(exc, self.world) or exc  # a rank that died: one line saying so, not the backend's
            if self.world.is_main:
                failed = writer.record_failure(self.path, self.rd.keys, self.cfg, self.started, self.device,
                                               self.world.world_size, error)  # fmt: skip
                if failed is not None:
                    self.trackers.close(failed)
                else:
                    self.trackers.finish("failed")
            if disk_error(error):
                raise disk_error(error) from exc
            if error is not exc:
                raise error from exc
            return False
        finally:
            self._open.close()

    # ------------------------------------------------------------------------------------------- inside it
    def begin(self, parts) -> None:
        """Everything is built: write the completed config and start the trackers (rank 0)."""
        self.cfg, self.device = parts.cfg, parts.device
        build = faiss_build()
        log.info("%s", build.describe())
        if build.conflict:
            log.warning("%s", build.conflict)
        if self.world.is_main:
            config = writer.write_config(self.path, self.cfg)
            self.trackers.start(self.path, config, run_tags(config, task_overrides(), git_state()["git/commit"]))

    def write_epoch(self, row: dict) -> None:
        if self.world.is_main:
            records.append_epoch(self.path, row)
            self.trackers.log_epoch(row)

    def truncate_epochs(self, last_epoch: int) -> None:
        if self.world.is_main:
            records.truncate_epochs(self.path, last_epoch)

    def finish(self, results: dict, pictures=None) -> dict:
        """The finished record (status last), then ``pictures(path) -> [png]`` and the trackers (rank 0)."""
        if self.world.is_main:
            self.record = self._close("finished", results)
            self.trackers.close(self.record, pictures(self.path) if pictures is not None else ())
        self.record = broadcast_object(self.record, self.world)
        return self.record

    def _close(self, status: str, extra: dict) -> dict:
        return writer.close_record(self.path, self.rd.keys, self.cfg, self.started, self.device,
                                   self.world.world_size, status, extra)  # fmt: skip


def disk_error(exc: BaseException) -> ResultsDiskError | None:
    """A read-only, full or forbidden results disk as one line naming the fix (None for any other error)."""
    if isinstance(exc, OSError) and exc.errno in writer.DISK_ERRORS:
        return ResultsDiskError(writer.disk_error_line(exc))
    return None
