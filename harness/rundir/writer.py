"""A run directory's life on disk (rank 0 only): open an attempt, close it with a record, record a failure.

    open_run_dir    clear the last attempt's outcome and orphaned temp files; write config.yaml, overrides.txt
    close_record    record.json: identity, results, the flattened config, provenance, ``status`` written last
    record_failure  the traceback in error.txt and a ``failed`` record (a table never counts it)
    disk_error_line a read-only, full or forbidden results disk as one line naming the fix

Everything goes through harness.redact and harness.io's atomic writes.
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
from harness.io import atomic_write_json, atomic_write_text, remove_orphans
from harness.provenance import provenance, task_overrides
from harness.redact import redact
from harness.rundir import identity, records

log = logging.getLogger(__name__)


def record_failure(cfg: DictConfig, run_dir: Path, started: float, parts, exc: BaseException) -> dict | None:
    """The traceback in error.txt and a ``failed`` record (rank 0); if the disk refuses even that, say so in the
    log."""
    try:
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        exc.error_file = str(run_dir / "error.txt")  # the command line then names it instead of the traceback
        return close_record(
            cfg,
            run_dir,
            started,
            parts,
            "failed",
            {"error": f"{type(exc).__name__}: {exc}", "error_file": str(run_dir / "error.txt")},
        )
    except OSError as err:
        log.error("could not record the failure in %s (%s); the record stays unwritten", run_dir, err)
        return None


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error_line(err: OSError) -> str:
    where = err.filename or "the results folder"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the disk of {where} ({err.strerror}); free space there, or set paths.results to "
            f"another disk, and run again: the run resumes from its last checkpoint"
        )
    return f"cannot write {where} ({err.strerror}); set paths.results to a folder you can write"


def open_run_dir(run_dir: Path, cfg: DictConfig) -> dict:
    """Start an attempt: clear the last attempt's outcome and temporary files, write the config and overrides;
    return the config as written (resolved, secrets redacted)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, run_dir / "checkpoints"):
        for orphan in remove_orphans(folder):
            log.info("removed %s, left by a write that was killed", orphan)
    (run_dir / records.RECORD).unlink(missing_ok=True)  # an old failed/pruned record: this attempt replaces it
    (run_dir / "error.txt").unlink(missing_ok=True)
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    atomic_write_text(run_dir / "overrides.txt", "\n".join(redact(task_overrides())) + "\n")
    return resolved


def close_record(cfg: DictConfig, run_dir: Path, started: float, parts, status: str, extra: dict) -> dict:
    """Write record.json (rank 0): identity, results, the flattened config, provenance, and ``status`` last."""
    container = redact(OmegaConf.to_container(cfg, resolve=True))
    record = {
        "run_dir": str(run_dir),
        "name": run_dir.name,
        **identity.identity_keys(cfg),
        "selection/metric": selection_of(cfg).key,
        "epochs": int(cfg.trainer.epochs),
        **extra,
        **{f"config/{k}": v for k, v in records.flatten(container).items()},
        "overrides": redact(task_overrides()),
        **provenance(parts.device),
        "processes": parts.world.world_size,
        "faiss/build": faiss_build().describe(),
        "wall_time_s": time.time() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": status,  # written last
    }
    atomic_write_json(run_dir / records.RECORD, record)
    return record
