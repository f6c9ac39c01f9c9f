"""The launchers: ``local`` runs jobs here, one after another; ``slurm`` / ``submitit_local`` submit them with
submitit (hydra-submitit-launcher's launcher, changed where a sweep of runs needs it).

All three compose every job's config first, skip the runs of a grid whose record is finished (nothing is
submitted for them), go on when a job fails, and write ``<sweep dir>/summary.json`` listing failed jobs with
the path of their error. See harness/launch/sweep.py (planning) and summary.py (what the jobs came to).

SLURM jobs are checkpointable: on the pre-emption / time-out signal (``--signal=USR2@signal_delay_s``, which
submitit adds), submitit calls ``checkpoint``, requeues the job (``scontrol requeue``, up to
``max_num_timeout`` time-outs) and exits; the requeued job calls the same function again and ``harness.run``
resumes from the run's last.pt (model, optimizer, scheduler, scaler, sampler position, every RNG state).
"""

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.cli import fail
from harness.errors import ConfigError
from harness.launch import code_snapshot, summary
from harness.launch import sweep as launching
from harness.launch.job_shape import Shape, slurm_resources
from harness.redact import holds_secret, redact_text
from hydra_plugins.harness_launchers.waiting import LOST_AFTER_S, quiet_submitit, wait_for_jobs
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

log = logging.getLogger(__name__)


@dataclass
class HarnessSlurmConf(SlurmQueueConf):
    """hydra-submitit-launcher's SLURM settings (all sbatch options it knows) plus the harness's own."""

    _target_: str = "hydra_plugins.harness_launchers.launchers.SlurmLauncher"
    skip_finished: bool | None = None  # null: skip finished runs of a grid (basic sweeper), never search workers
    snapshot: bool = True  # jobs import a git snapshot of the submitted tree, not the live one
    lost_after_s: float = LOST_AFTER_S  # without sacct: a job out of the queue with no result this long is failed


@dataclass
class HarnessSubmititLocalConf(LocalQueueConf):
    """``hydra/launcher=submitit_local``: the jobs as parallel local processes through submitit (the code path
    of slurm, no cluster needed). Replaces hydra-submitit-launcher's entry of that name."""

    _target_: str = "hydra_plugins.harness_launchers.launchers.SubmititLocalLauncher"
    timeout_min: int = 240
    cpus_per_task: int | None = 1
    stderr_to_stdout: bool = True  # one log per job: <sweep dir>/.submitit/<job id>/<job id>_0_log.out
    skip_finished: bool | None = None


def register_configs() -> None:
    ConfigStore.instance().store(
        group="hydra/launcher", name="harness_slurm_schema", node=HarnessSlurmConf, provider="harness"
    )
    ConfigStore.instance().store(
        group="hydra/launcher", name="submitit_local", node=HarnessSubmititLocalConf, provider="harness"
    )


class RegisterLaunchers(SearchPathPlugin):
    """Registers the configs again once Hydra has imported every plugin module: its scan may import
    hydra-submitit-launcher's config after this module, and that would put back its own ``submitit_local``."""

    def manipulate_search_path(self, search_path) -> None:
        register_configs()


register_configs()


class LocalLauncher(Launcher):
    """The jobs one after another in this process, like Hydra's basic launcher (the default)."""

    def __init__(self, skip_finished: bool | None = None) -> None:
        self.skip_finished = skip_finished
        self.config: DictConfig | None = None
        self.hydra_context = None
        self.task_function = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        launching.check_results_disk(config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir, jobs = launching.prepare(
            self.hydra_context, self.config, job_overrides, initial_job_idx, self.skip_finished
        )
        returns = []
        for job in jobs:
            if job.finished:
                returns.append(summary.skipped_return(job))
                continue
            log.info("\t#%d : %s", job.idx, job.label)
            returns.append(launching.run_one(self.hydra_context, self.task_function, job.config))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return summary.close_sweep(sweep_dir, jobs, returns, self.config, {"launcher": "local"})


class SubmititLauncher(BaseSubmititLauncher):
    """Submits the jobs that are not finished as one job array and waits for each; a failed or lost job
    becomes a FAILED return (with the scheduler's reason) instead of stopping the sweep."""

    def __init__(
        self,
        skip_finished: bool | None = None,
        snapshot: bool = False,
        lost_after_s: float = LOST_AFTER_S,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.skip_finished = skip_finished
        self.snapshot = snapshot
        self.lost_after_s = lost_after_s
        self.code: dict | None = None  # the snapshot, made once per command (a search launches several times)

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        launching.check_results_disk(config)

    def __call__(self, config: DictConfig, singleton_state: dict) -> JobReturn:
        """One job, on its node (again after each requeue). ``config`` was composed at submission. Once submitit
        refuses a requeue, the job ends with its error wherever the signal lands (out_of_time.py)."""
        import submitit

        import harness
        from hydra_plugins.harness_launchers.out_of_time import ends_when_out_of_time

        Singleton.set_state(singleton_state)
        setup_globals()
        with read_write(config.hydra.job), open_dict(config.hydra.job):
            config.hydra.job.id = submitit.JobEnvironment().job_id
        print(
            f"job {config.hydra.job.id} (#{config.hydra.job.num}) runs the harness code in "
            f"{Path(harness.__file__).parent}",
            flush=True,
        )
        with ends_when_out_of_time(submitit.JobEnvironment()._usr_sig()):  # private: pinned, test_dependencies
            return launching.run_one(self.hydra_context, self.task_function, config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if self._EXECUTOR == "slurm" and shutil.which("sbatch") is None:
            fail(
                "hydra/launcher=slurm needs SLURM's sbatch on this machine: run on the cluster's login node, "
                "or use hydra/launcher=local or submitit_local here"
            )
        sweep_dir, jobs = launching.prepare(
            self.hydra_context, self.config, job_overrides, initial_job_idx, self.skip_finished
        )  # also redacts Hydra's multirun.yaml
        refuse_secrets(job_overrides)
        self.shapes(jobs)  # every job's processes, nodes and GPUs agree: checked before the cluster is asked anything
        if self._EXECUTOR == "slurm":
            launching.find_queued(jobs, launching.active_slurm_jobs())
        todo = [j for j in jobs if not j.finished and not j.queued]
        info = {"launcher": self.NAME}
        returns = {}
        groups = self.shapes(todo)  # one job array per shape (processes per node, nodes)
        submitted = []
        for resources, group in groups:
            executor = self.make_executor(sweep_dir, info, resources)
            subs = executor.map_array(self, [j.config for j in group], [Singleton.get_state()] * len(group))
            for job, sub in zip(group, subs):
                job.job_id, job.log = sub.job_id, str(sub.paths.stdout)
                if self._EXECUTOR == "slurm":
                    launching.mark_submitted(job)
                log.info("\t#%d : %s  (job %s)", job.idx, job.label, sub.job_id)
                submitted.append((job, sub))
        lost = {}
        if submitted:
            log.info(
                "submitted %d jobs to %s; waiting (logs in %s)",
                len(todo),
                self._EXECUTOR,
                Path(str(submitted[0][1].paths.folder)).parent,
            )
            in_queue = launching.active_slurm_jobs if self._EXECUTOR == "slurm" else None
            with quiet_submitit():
                lost = wait_for_jobs(submitted, in_queue, self.lost_after_s)
            for job, sub in submitted:
                if job.idx in lost:
                    returns[job.idx] = summary.failed_return(job, LostJob(lost[job.idx]))
                    continue
                try:
                    returns[job.idx] = sub.results()[0]
                except Exception as err:  # killed, out of time too often, lost: no result from the job
                    returns[job.idx] = summary.failed_return(job, err)
        ordered = [
            summary.skipped_return(j) if j.finished else summary.queued_return(j) if j.queued else returns[j.idx]
            for j in jobs
        ]
        return summary.close_sweep(sweep_dir, jobs, ordered, self.config, info)

    def shapes(self, jobs: list) -> list:
        """[(launcher parameters, jobs)]: SLURM starts a run's processes as its tasks (harness/launch/job_shape.py);
        elsewhere a run on several processes starts them itself (one task)."""
        groups = {}
        for job in jobs:
            groups.setdefault(Shape.of(job.config) if self._EXECUTOR == "slurm" else Shape(), []).append(job)
        try:
            return [
                (
                    slurm_resources(
                        shape, *(self.params.get(k) for k in ("gpus_per_node", "gres", "tasks_per_node", "nodes"))
                    )
                    if self._EXECUTOR == "slurm"
                    else {},
                    group,
                )
                for shape, group in groups.items()
            ]
        except ConfigError as err:
            fail(str(err))

    def make_executor(self, sweep_dir: Path, info: dict, resources: dict | None = None):
        """A submitit executor from this launcher's settings (as hydra-submitit-launcher builds it), with the
        job shape's ``tasks_per_node`` and ``nodes``."""
        import submitit

        params = {**self.params, **(resources or {})}
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        if self.snapshot and self.code is None:
            self.code = self.snapshot_code(sweep_dir)
        if self.code:
            params["setup"] = [*(params.get("setup") or []), *code_snapshot.snapshot_env(self.code["dir"])]
            info["code"] = self.code
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    def snapshot_code(self, sweep_dir: Path) -> dict:
        if not code_snapshot.snapshot_supported():
            log.warning(
                "hydra.launcher.snapshot needs Python >= 3.11 (PYTHONSAFEPATH); jobs import the live tree "
                "(each record still names the commit it ran)"
            )
            return {}
        return code_snapshot.snapshot_code(sweep_dir / ".code" / time.strftime("%Y%m%d-%H%M%S"))


def refuse_secrets(job_overrides: Sequence[Sequence[str]]) -> None:
    """Submitit pickles each job's config, overrides included, into its job folder, where nothing can redact
    them: an override holding a secret in clear is refused before anything is written (one line, exit 2)."""
    for override in (o for overrides in job_overrides for o in overrides):
        if holds_secret(override):
            key = override.split("=", 1)[0]
            fail(
                f"the override {redact_text(override)!r} holds a secret, which submitit would write into "
                f"its job files; give it from the environment instead: {key}='${{oc.env:VAR}}' with VAR "
                f"exported in this shell (the jobs inherit it)"
            )


class LostJob(RuntimeError):
    """A job that ended without a result, of which SLURM can no longer say anything (see waiting.py)."""


class SlurmLauncher(SubmititLauncher):
    NAME = _EXECUTOR = "slurm"


class SubmititLocalLauncher(SubmititLauncher):
    NAME, _EXECUTOR = "submitit_local", "local"
