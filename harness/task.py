"""One run, top to bottom: ``run(cfg) -> record``.

    validate the config; find the run directory (skip a finished run, resume an unfinished one)
    build the parts (harness.build); fit: train, select on validation, test the selected epoch (harness.fit)
    close the record: record.json with status finished, failed or pruned, written atomically, status last

The test split never drives a choice: the epoch is selected on the class-disjoint validation split.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from harness import identity, records
from harness.build import build
from harness.config import selection_of, validate_config
from harness.console import format_summary, logging_to
from harness.errors import RunPruned
from harness.fit import Plan, fit
from harness.io import atomic_write_json, atomic_write_text, remove_orphans
from harness.provenance import provenance, task_overrides

log = logging.getLogger("harness")


def run(cfg: DictConfig, on_evaluate=None) -> dict:
    """Train, select on validation, test, and record one run. ``on_evaluate(epoch, val_metrics)`` may
    raise :class:`~harness.errors.RunPruned` (the Optuna driver's pruning hook)."""
    validate_config(cfg)
    plan = Plan.from_config(cfg)
    run_dir = identity.run_dir_for(cfg)
    previous = records.read_record(run_dir)
    if previous and previous.get("status") == "finished":
        if not cfg.trainer.rerun:
            log.info("already finished, skipped: %s", run_dir)
            return previous
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # rerun: train from scratch

    started = time.time()
    if cfg.trainer.get("num_threads"):
        torch.set_num_threads(int(cfg.trainer.num_threads))
    parts = build(cfg)
    cfg = parts.cfg

    # Everything is built: from here on, a failure leaves a record with status "failed", never "finished".
    with logging_to(run_dir / "run.log"):
        open_run_dir(run_dir, cfg)
        try:
            result = fit(parts, plan, run_dir, on_evaluate)
        except RunPruned as pruned:
            log.info("pruned at epoch %d: %s", pruned.epoch, run_dir)
            return close_record(cfg, run_dir, started, parts.device, "pruned", {"pruned_epoch": pruned.epoch})
        except BaseException as exc:  # KeyboardInterrupt too: the record must not look finished
            atomic_write_text(run_dir / "error.txt", traceback.format_exc())
            close_record(cfg, run_dir, started, parts.device, "failed",
                         {"error": f"{type(exc).__name__}: {exc}", "error_file": str(run_dir / "error.txt")})
            raise
    record = close_record(cfg, run_dir, started, parts.device, "finished", result)
    log.info("%s", format_summary(record))
    return record


def open_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    """Start an attempt: clear the last attempt's outcome and temporary files, write the config and overrides."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, run_dir / "checkpoints"):
        for orphan in remove_orphans(folder):
            log.info("removed %s, left by a write that was killed", orphan)
    (run_dir / records.RECORD).unlink(missing_ok=True)  # an old failed/pruned record: this attempt replaces it
    (run_dir / "error.txt").unlink(missing_ok=True)
    resolved = records.redact(OmegaConf.to_container(cfg, resolve=True))
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    atomic_write_text(run_dir / "overrides.txt", "\n".join(task_overrides()) + "\n")


def close_record(cfg: DictConfig, run_dir: Path, started: float, device, status: str, extra: dict) -> dict:
    """Write record.json: identity, results, the flattened config, provenance, and ``status`` last."""
    container = records.redact(OmegaConf.to_container(cfg, resolve=True))
    record = {
        "run_dir": str(run_dir),
        "name": run_dir.name,
        **identity.identity_keys(cfg),
        "selection/metric": selection_of(cfg).key,
        "epochs": int(cfg.trainer.epochs),
        **extra,
        **{f"config/{k}": v for k, v in records.flatten(container).items()},
        "overrides": records.redact(task_overrides()),
        **provenance(device),
        "wall_time_s": time.time() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": status,  # written last
    }
    atomic_write_json(run_dir / records.RECORD, record)
    return record
