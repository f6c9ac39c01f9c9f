"""What an attempt writes into its run directory (rank 0 only), each file atomically and redacted.

open_attempt    clear the last attempt's outcome and orphaned temp files; write config.yaml, overrides.txt
write_config    config.yaml again, completed (the ``???`` values the data decides, filled in by build)
close_record    record.json: identity keys, results, the flattened config, provenance, ``status`` written last
record_failure  the traceback in error.txt and a ``failed`` record (a table never counts it)
disk_error_line a read-only, full or forbidden results disk as one line naming the fix
"""

from __future__ import annotations

import errno
import logging
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config import selection_of
from harness.evaluation.faiss_build import faiss_build
from harness.io import DISK_ERRORS, atomic_write_json, atomic_write_text, remove_orphans  # noqa: F401 (attempt.py)
from harness.provenance import provenance, task_overrides
from harness.redact import redact
from harness.rundir import records

log = logging.getLogger(__name__)

ERROR_FILE = "error.txt"
CONFIG_FILE = "config.yaml"


def disk_error_line(err: OSError) -> str:
    where = err.filename or "the results folder"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the disk of {where} ({err.strerror}); free space there, or set paths.results to "
            f"another disk, and run again: the run resumes from its last checkpoint"
        )
    return f"cannot write {where} ({err.strerror}); set paths.results to a folder you can write"


def open_attempt(run_dir: Path, cfg: DictConfig) -> dict:
    """Start an attempt: clear the last attempt's outcome and temporary files, write the config and overrides;
    return the config as written (resolved, secrets redacted)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, run_dir / "checkpoints"):
        for orphan in remove_orphans(folder):
            log.info("removed %s, left by a write that was killed", orphan)
    (run_dir / records.RECORD).unlink(missing_ok=True)  # an old failed/pruned record: this attempt replaces it
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    atomic_write_text(run_dir / "overrides.txt", "\n".join(redact(task_overrides())) + "\n")
    return write_config(run_dir, cfg)


def write_config(run_dir: Path, cfg: DictConfig) -> dict:
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))
    atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return resolved


def close_record(
    run_dir: Path, keys: dict, cfg: DictConfig, started: float, device, processes: int, status: str, extra: dict
) -> dict:
    """Write record.json: identity keys, results, the flattened config, provenance, and ``status`` last."""
    container = redact(OmegaConf.to_container(cfg, resolve=True))
    record = {
        "run_dir": str(run_dir),
        "name": run_dir.name,
        **keys,
        "selection/metric": selection_of(cfg).key,
        "epochs": int(cfg.trainer.epochs),
        **extra,
        **{f"config/{k}": v for k, v in records.flatten(container).items()},
        "overrides": redact(task_overrides()),
        **provenance(device),
        "processes": processes,
        "faiss/build": faiss_build().describe(),
        "wall_time_s": time.time() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": status,  # written last
    }
    atomic_write_json(run_dir / records.RECORD, record)
    return record


def record_failure(run_dir: Path, keys: dict, cfg, started: float, device, processes: int, exc) -> dict | None:
    """The traceback in error.txt and a ``failed`` record; if the disk refuses even that, say so in the log."""
    try:
        atomic_write_text(run_dir / ERROR_FILE, "".join(traceback.format_exception(exc)))
        exc.error_file = str(run_dir / ERROR_FILE)  # the command line then names it instead of the traceback
        extra = {"error": f"{type(exc).__name__}: {exc}", "error_file": str(run_dir / ERROR_FILE)}
        return close_record(run_dir, keys, cfg, started, device, processes, "failed", extra)
    except OSError as err:
        log.error("could not record the failure in %s (%s); the record stays unwritten", run_dir, err)
        return None
