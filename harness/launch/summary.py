"""What a sweep's jobs came to: the value each returns to the sweeper, and ``<sweep dir>/summary.json``.

    skipped_return / queued_return / failed_return   a job that did not run here, as the sweeper sees it
    summary_row    one job's status, run directory, error and where to read more
    write_summary  <sweep dir>/summary.json (atomic) and, in the log, the counts and each failed job
    close_sweep    the summary; then a grid with failed jobs ends in one line and exit code 1

Planning the jobs is harness.launch.sweep.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from harness.cli import fail
from harness.io import atomic_write_json
from harness.launch.sweep import GRID_SWEEPER, Job, one_line_on_disk_errors
from harness.redact import redact
from harness.rundir.run_dir import RunDir

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


def skipped_return(job: Job) -> JobReturn:
    """What a skipped job returns to the sweeper: its finished record's objective, as run.py would."""
    record = job.finished
    value = record.get(record.get("selection/metric", ""), math.nan)
    ret = JobReturn(
        overrides=job.overrides,
        cfg=None,
        hydra_cfg=None,
        working_dir=str(job.run_dir),
        task_name=str(job.config.hydra.job.name),
        status=JobStatus.COMPLETED,
    )
    ret.return_value = value
    return ret


def queued_return(job: Job) -> JobReturn:
    """A run left to the earlier job that runs it: no value yet (NaN)."""
    ret = JobReturn(overrides=job.overrides, task_name=str(job.config.hydra.job.name), status=JobStatus.COMPLETED)
    ret.return_value = math.nan
    return ret


def failed_return(job: Job, error: BaseException) -> JobReturn:
    """A job that ended without a result (killed, out of time, lost): FAILED, with the scheduler's error."""
    ret = JobReturn(overrides=job.overrides, task_name=str(job.config.hydra.job.name), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


def summary_row(job: Job, ret: JobReturn) -> dict:
    """Status, run directory, error and where to read more, for one job."""
    row = {
        "job": job.idx,
        "overrides": " ".join(job.overrides),
        "status": None,
        "run_dir": str(job.run_dir) if job.run_dir else None,
        "error": None,
        "error_file": None,
        "log": job.log,
        "job_id": job.job_id,
    }
    record = job.finished or (RunDir.at(job.run_dir).record() if job.run_dir else None)
    if job.finished:
        row["status"] = "skipped"
    elif job.queued:
        row["status"] = "queued"
    elif ret.status == JobStatus.FAILED:
        row["status"] = "failed"
        error = ret._return_value
        row["error"] = f"{type(error).__name__}: {error}".strip()[:2000]
    elif record is not None:
        row["status"] = record.get("status")
    else:
        row["status"] = "completed"
    if row["status"] == "failed":
        # the run's own error.txt if this job wrote it (a failure in training), else the job's traceback
        run_error = Path(job.run_dir) / "error.txt" if job.run_dir else None
        job_error = Path(str(job.config.hydra.sweep.dir)) / str(job.config.hydra.sweep.subdir) / "error.txt"
        if run_error is not None and run_error.exists() and run_error.stat().st_mtime >= job.planned_at:
            row["error_file"] = str(run_error)
        elif job_error.exists():
            row["error_file"] = str(job_error)
        else:  # the job left no traceback (killed, lost): its log says what the scheduler did
            row["error_file"] = job.log
    return row


def write_summary(sweep_dir: Path, rows: list, extra: dict | None = None) -> Path:
    """``<sweep dir>/summary.json`` (atomic) and a few lines in the log: counts, then each failed job."""
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    path = Path(sweep_dir) / SUMMARY
    atomic_write_json(path, redact({"counts": counts, **(extra or {}), "jobs": rows}))
    log.info("sweep summary: %s (%s)", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), path)
    for row in rows:
        if row["status"] == "failed":
            log.error(
                "failed: #%d %s\n    %s\n    error: %s%s",
                row["job"],
                row["overrides"],
                row["error"],
                row["error_file"],
                f"\n    log:   {row['log']}" if row["log"] else "",
            )
    return path


def close_sweep(
    sweep_dir: Path, jobs: list, returns: list, master_config: DictConfig, extra: dict | None = None
) -> list:
    """Write the summary; a grid with failed jobs then ends in one line naming the first and the summary, and
    exit code 1 (the other jobs ran). Without this, Hydra's grid sweeper re-raises the first failed job's
    exception and prints its traceback. Search workers are not judged here: the search driver counts trials."""
    rows = [summary_row(j, r) for j, r in zip(jobs, returns)]
    with one_line_on_disk_errors(sweep_dir):
        path = write_summary(sweep_dir, rows, extra)
    failed = [r for r in rows if r["status"] == "failed"]
    if failed and OmegaConf.select(master_config, "hydra.sweeper._target_") == GRID_SWEEPER:
        first = failed[0]
        error = " ".join(str(first["error"]).split())[:300]
        fail(
            f"{len(failed)} of {len(rows)} jobs failed (first: #{first['job']} {first['overrides']}: {error}); "
            f"every job's error and log: {path}",
            code=1,
        )
    return returns
