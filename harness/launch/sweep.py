"""The launcher side of a sweep: which jobs to run, what happened to each, and the code they run.

The Hydra launchers (``hydra/launcher=local | slurm | submitit_local``, in hydra_plugins/harness_launchers/)
are thin; what they share lives here:

    prepare        the sweep directory and the planned jobs (every launcher starts here)
    plan_jobs      compose every job's config before anything runs; a grid job whose run directory already
                   holds a finished record is skipped, never submitted (re-running a sweep finishes it)
    find_queued    a run that a SLURM job of an earlier command still runs (or waits to run) is not submitted
                   again: typing the command while jobs are queued never runs a run twice
    run_one        one job on its worker: Hydra's run_job, plus the traceback in <job dir>/error.txt if it fails

What the jobs came to (the sweeper's values, summary.json) is harness.launch.summary.

The code a SLURM job imports is frozen by harness.launch.code_snapshot.

Training code never imports this module (nor submitit).
"""

from __future__ import annotations

import copy
import getpass
import json
import logging
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.cli import fail
from harness.config import validate_config
from harness.distributed.world import launch_from_env
from harness.errors import HarnessError
from harness.io import DISK_ERRORS, atomic_write_json, atomic_write_text, disk_line
from harness.redact import redact, redact_text
from harness.rundir import identity
from harness.rundir.run_dir import RunDir
from harness.tracking.naming import SWEPT_ENV, varying_keys

log = logging.getLogger(__name__)

JOB_FILE = "slurm_job.json"  # in a run directory: the SLURM job submitted to run it
GRID_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
RESULTS_FIX = (
    "set paths.results to a folder on a disk you can write and run the sweep again (finished runs are skipped)"
)


@dataclass
class Job:
    """One job of a sweep: its number, overrides and composed config (with its ``hydra`` node)."""

    idx: int
    overrides: list
    config: DictConfig
    run_dir: Path | None = None  # the harness run this job is (grids); None for other task functions
    finished: dict | None = None  # its finished record: the job is skipped
    queued: str | None = None  # a SLURM job of an earlier command still runs it: not submitted again
    log: str | None = None  # where the job's output went (submitit's log file), if not the console
    job_id: str | None = None  # the scheduler's id
    planned_at: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        return " ".join(filter_overrides(self.overrides))


# ----------------------------------------------------------------------------------------------- before launching
def skips_finished(setting: bool | None, master_config: DictConfig) -> bool:
    """Whether jobs are harness runs to skip when finished: ``skip_finished`` if set, else for grids only.

    A grid (Hydra's basic sweeper) maps one job to one run. Other sweepers (the Optuna search) launch worker
    jobs that are not runs, so the launcher must not judge them by a record.
    """
    if setting is not None:
        return bool(setting)
    return OmegaConf.select(master_config, "hydra.sweeper._target_") == GRID_SWEEPER


def prepare(
    hydra_context,
    master_config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    skip_finished: bool | None,
) -> tuple:
    """What every launcher does first: create the sweep directory and plan the jobs; (sweep dir, jobs)."""
    sweep_dir = Path(str(master_config.hydra.sweep.dir))
    with one_line_on_disk_errors(sweep_dir):
        sweep_dir.mkdir(parents=True, exist_ok=True)
        redact_sweep_config(sweep_dir)
    jobs = plan_jobs(
        hydra_context, master_config, job_overrides, initial_job_idx, skips_finished(skip_finished, master_config)
    )
    return sweep_dir, jobs


def plan_jobs(
    hydra_context,
    master_config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    skip_finished: bool,
) -> list:
    """Compose each job's config now (a wrong override fails before any submission) and find finished runs."""
    jobs = []
    identity.forget_data()  # fingerprint each dataset once for the whole plan
    swept = ",".join(varying_keys(job_overrides))  # what the trackers name runs by (harness/tracking/naming.py)
    for i, overrides in enumerate(job_overrides):
        config = hydra_context.config_loader.load_sweep_config(master_config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = initial_job_idx + i
            config.hydra.job.env_set[SWEPT_ENV] = swept
        job = Job(idx=initial_job_idx + i, overrides=list(overrides), config=config)
        if skip_finished:
            rd, rerun = run_dir_of(config)
            if rd is not None:
                job.run_dir, job.finished = rd.path, rd.finished(rerun)
        jobs.append(job)
    skipped = sum(j.finished is not None for j in jobs)
    if skipped:
        log.info("%d of %d runs are already finished: skipped, nothing submitted for them", skipped, len(jobs))
    return jobs


def run_dir_of(config: DictConfig) -> tuple:
    """The :class:`RunDir` ``harness.run`` will use for this job (and its ``trainer.rerun``), computed as the job
    will: on the config without its ``hydra`` node, while HydraConfig holds the job's config. None when it
    cannot be known here (the data is not visible, or the job's config is bad): the job is then submitted."""
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    hydra_config.set_config(copy.deepcopy(config))
    try:
        cfg = copy.deepcopy(config)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        rerun = bool(OmegaConf.select(cfg, "trainer.rerun", default=False))
        if not identity.data_available(cfg):  # e.g. a login node that does not see the compute nodes' data
            return None, rerun
        try:
            validate_config(cfg, here=False)  # as harness.run does first (it may settle trainer.amp: the same dir);
            # here=False: planning on a login node never asks for this machine's GPU
            return RunDir.for_config(cfg, trust_manifest=True), rerun  # a dataset's manifest spares the hashing
        except HarnessError:  # bad data or config: the job itself fails with that line
            return None, rerun
    finally:
        hydra_config.cfg = saved


def find_queued(jobs: list, active: dict | None) -> None:
    """Mark the runs that a SLURM job submitted by an earlier command still runs or waits to run (``active``:
    job id -> state), so that typing the command again while they are queued never runs a run twice."""
    if active is None:
        log.warning("runs queued by an earlier command may be submitted again: squeue could not say which are")
        return
    for job in jobs:
        path = Path(job.run_dir) / JOB_FILE if job.run_dir else None
        if job.finished or path is None or not path.exists():
            continue
        job_id = json.loads(path.read_text()).get("job_id")
        if job_id in active:
            job.queued, job.job_id = active[job_id], job_id
    queued = [j for j in jobs if j.queued]
    if queued:
        log.info(
            "%d runs are still queued or running as earlier jobs (%s): not submitted again",
            len(queued),
            ", ".join(j.job_id for j in queued),
        )


def active_slurm_jobs() -> dict | None:
    """This user's SLURM jobs that are not over, one entry per array task: {job id: state}; None when squeue
    cannot be asked (then nothing is known, which is not the same as an empty queue)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("squeue failed (%s)", str(err).strip()[:200])
        return None
    return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)


def mark_submitted(job: Job) -> None:
    """Write ``<run dir>/slurm_job.json``: which job runs this run (read by ``find_queued``)."""
    if job.run_dir:
        atomic_write_json(
            Path(job.run_dir) / JOB_FILE,
            {"job_id": job.job_id, "log": job.log, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        )


# ----------------------------------------------------------------------------------------------- on the worker
def run_one(hydra_context, task_function: Callable, config: DictConfig) -> JobReturn:
    """Hydra's ``run_job`` for one job; a failure also leaves its traceback in ``<job dir>/error.txt``."""
    ret = run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if ret.status == JobStatus.FAILED and launch_from_env().rank == 0:  # one writer: a job's other tasks only log
        error = ret._return_value
        path = Path(str(config.hydra.runtime.output_dir)) / "error.txt"
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        with one_line_on_disk_errors(path):  # a full disk failed the job: the next ones would fail alike
            atomic_write_text(path, redact_text(text))
        log.error("job %s failed (%s: %s); traceback in %s", config.hydra.job.num, type(error).__name__, error, path)
    return ret


def check_results_disk(config: DictConfig) -> None:
    """Before Hydra's sweeper writes the sweep directory (launcher set-up): a results disk that refuses it is one
    line and exit code 2, not Hydra's traceback."""
    try:
        sweep_dir = Path(str(config.hydra.sweep.dir))
    except Exception:  # an interpolation that does not resolve: Hydra's own error says which
        return
    with one_line_on_disk_errors(sweep_dir):
        sweep_dir.mkdir(parents=True, exist_ok=True)
        probe = sweep_dir / ".write_probe"
        try:
            probe.write_bytes(bytes(65536))  # room for multirun.yaml and the summary
        finally:
            probe.unlink(missing_ok=True)


@contextmanager
def one_line_on_disk_errors(where: Path):
    """A read-only or full results disk ends the sweep with one line and exit code 2, never a traceback."""
    try:
        yield
    except OSError as err:
        if err.errno not in DISK_ERRORS:
            raise
        fail(disk_line(err, RESULTS_FIX, str(where)))


def redact_sweep_config(sweep_dir: Path) -> None:
    """Hydra's grid sweeper saves the whole command as ``<sweep dir>/multirun.yaml`` before any launcher runs:
    rewrite it without secrets (a password typed as an override never stays on disk)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if path.exists():
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(redact(data))))
