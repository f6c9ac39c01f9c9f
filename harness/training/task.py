"""One run, top to bottom: ``run(cfg) -> record``.

    validate the config; find the run directory (skip a finished run, resume an unfinished one)
    build the parts (harness.training.build); fit: train, select on validation, test the selected epoch
    (harness.training.fit)
    close the record: record.json with status finished, failed or pruned, written atomically, status last

The test split never drives a choice: the epoch is selected on the class-disjoint validation split.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig

from harness.config import validate_config
from harness.distributed import World, barrier, broadcast_object, lost_peer, on_main
from harness.errors import ResultsDiskError, RunPruned
from harness.evaluation.faiss_build import faiss_build
from harness.evaluation.per_query import save_per_query
from harness.inspect import pictures_at_end, pictures_wanted
from harness.launch import processes
from harness.provenance import git_state, task_overrides
from harness.rundir import identity, records, salvage
from harness.rundir.lock import run_lock
from harness.rundir.writer import (
    DISK_ERRORS,
    close_record,
    disk_error_line,
    open_run_dir,
    record_failure,
)
from harness.tracking import Trackers, build_trackers, run_tags
from harness.training.build import build, instantiate
from harness.training.console import format_summary, logging_to
from harness.training.fit import Plan, fit

log = logging.getLogger(__name__)


def run(cfg: DictConfig, on_evaluate=None) -> dict:
    """Train, select on validation, test, and record one run. ``on_evaluate(epoch, val_metrics)`` may
    raise :class:`~harness.errors.RunPruned` (the Optuna driver's pruning hook).

    One process at a time writes a run directory (harness.rundir.lock: a second one waits for the first, then skips
    or resumes); a directory holding another identity's run is refused; a damaged record is moved aside.

    ``trainer.devices`` x ``trainer.nodes`` > 1: one run on that many processes. Started by SLURM or torchrun,
    this process is one of them (harness.distributed); started alone, it starts them (harness.launch.processes)."""
    validate_config(cfg)
    if processes.must_spawn(cfg):
        return processes.run_local(cfg, on_evaluate)
    with processes.joined(cfg, on_evaluate) as world:
        return run_in(cfg, world, on_evaluate)


def run_in(cfg: DictConfig, world: World, on_evaluate=None) -> dict:
    """One run in this process, alone or as one rank of ``world``: rank 0 holds the run directory's lock and
    writes it; the others follow its decisions (skip, resume, fail)."""
    plan = Plan.from_config(cfg)
    identity.forget_data()  # the data is fingerprinted afresh for every run (and once within it)
    run_dir = identity.run_dir_for(cfg)
    try:
        with run_lock(run_dir) if world.is_main else contextlib.nullcontext():
            return run_locked(cfg, plan, run_dir, world, on_evaluate)
    except OSError as err:
        if err.errno in DISK_ERRORS:  # a read-only, full or forbidden results disk: one line naming the fix
            raise ResultsDiskError(disk_error_line(err)) from None
        raise


def run_locked(cfg: DictConfig, plan: Plan, run_dir: Path, world: World, on_evaluate) -> dict:
    def previous_record():
        identity.check_identity(run_dir, cfg)
        return salvage.read_record_or_set_aside(run_dir / records.RECORD)

    previous = on_main(previous_record, world)  # rank 0 reads; every rank takes its answer (or its error)
    if previous and previous.get("status") == "finished":
        if not cfg.trainer.rerun:
            log.info("already finished, skipped: %s", run_dir)
            return previous
        if world.is_main:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # rerun: train from scratch
        barrier(world)

    started = time.time()
    parts = build(cfg, world=world)
    cfg = parts.cfg
    build_line = faiss_build()
    log.info("%s", build_line.describe())
    if build_line.conflict:
        log.warning("%s", build_line.conflict)

    # logger=[tensorboard,wandb] (none by default): rank 0 alone reports to trackers
    trackers = build_trackers(cfg.get("logger"), instantiate) if world.is_main else Trackers({})

    # Everything is built: from here on, a failure leaves a record with status "failed", never "finished".
    with logging_to(run_dir / "run.log") if world.is_main else contextlib.nullcontext():
        if world.is_main:
            config = open_run_dir(run_dir, cfg)
            trackers.start(run_dir, config, run_tags(config, task_overrides(), git_state()["git/commit"]))
        try:
            fitted = fit(parts, plan, run_dir, on_evaluate, on_epoch=trackers.log_epoch)
        except RunPruned as pruned:
            log.info("pruned at epoch %d: %s", pruned.epoch, run_dir)
            record = close_record(cfg, run_dir, started, parts, "pruned", {"pruned_epoch": pruned.epoch})
            trackers.close(record)
            return record
        except BaseException as exc:  # KeyboardInterrupt too: the record must not look finished
            error = lost_peer(exc, world) or exc  # a rank that died: one line saying so, not the backend's
            if world.is_main:
                failed = record_failure(cfg, run_dir, started, parts, error)
                if failed is not None:
                    trackers.close(failed)
                else:
                    trackers.finish("failed")
            if error is not exc:
                raise error from exc
            raise
        if world.is_main:  # the test queries' values beside the record, which names their file
            fitted.results.update(save_per_query(run_dir, fitted.per_query))
        record = close_record(cfg, run_dir, started, parts, "finished", fitted.results) if world.is_main else None
        if world.is_main:
            draw = pictures_wanted(cfg.eval.get("pictures", "auto"), parts.data.vector_inputs)
            trackers.close(
                record, pictures_at_end(run_dir, parts, fitted, cfg.eval.get("picture_map", "umap")) if draw else ()
            )
    record = broadcast_object(record, world)
    log.info("%s", format_summary(record))
    return record
