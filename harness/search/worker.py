"""One search worker: ask -> run -> tell, until the study holds its total of finished trials.

The sweeper launches ``n_workers`` of these as jobs of the configured Hydra launcher (in-process, local
processes, SLURM jobs). Each asks for its next trial as soon as its previous one ends (no batches), and all
of them share the study's storage. A trial is one ordinary harness run:

    overrides = the search's fixed overrides + one ``key=value`` per searched parameter
    cfg       = the run's config composed from them, plus ``search: {study, trial}``
    record    = harness.run(cfg, on_evaluate=<report to the trial; raise RunPruned when the pruner says so>)

``search.trial`` enters the run directory's hash, so every trial has its own directory, never renumbered or
overwritten; a trial retried after its worker died uses the number of the trial it carries on, so the retry
resumes the dead run's last checkpoint. When the rest of the total is in flight elsewhere, a worker waits
(polling) rather than leave: if another worker dies, its trial is failed by heartbeat and retried here.

Counting the study and asking for a trial happen under :class:`AskGate`, an OS lock on the study directory, so
two workers never both take the last slot. (Should the study directory not be shared between the workers'
hosts, the gate cannot see the other host; then the later of two such trials is marked ``surplus`` and not run.)
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import socket
import time
import warnings
from copy import deepcopy
from functools import partial
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict, read_write
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError

from harness.errors import RunPruned
from harness.protocols.folds import run_folds
from harness.redact import redact_text
from harness.rundir.run_dir import RunDir
from harness.search.space import format_override, suggest
from harness.search.study import Search, is_surplus, load_study, retry_root, tally
from harness.training.task import run

log = logging.getLogger(__name__)


class SurplusTrial(Exception):
    """Two workers asked for the study's last slot at once; the later trial is not run."""


def work(job_cfg: DictConfig, *, search: Search, master_config: DictConfig, config_loader) -> dict:
    """The Hydra task function of a worker job (``job_cfg`` is the job's own config; trials compose theirs)."""
    worker = worker_number()
    study = load_study(search, worker)
    gate = AskGate(search.study_dir)
    objective = partial(
        run_trial, search=search, master_config=master_config, config_loader=config_loader, on_asked=gate.release
    )
    started = 0
    while True:
        fail_stale_trials(study)
        gate.acquire()  # released once our trial exists (on_asked) or we decided not to ask
        counts = tally(study.get_trials(deepcopy=False))
        if len(counts.done) >= search.n_trials:
            gate.release()
            break
        if counts.waiting or counts.claimed < search.n_trials:
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
            except (ValueError, UpdateFinishedTrialError) as err:  # our trial was failed while it ran
                log.warning(
                    "worker %d: its trial was failed by another worker (no heartbeat for grace_period=%ss; "
                    "raise it if this machine stalls that long): %s",
                    worker,
                    search.grace_period,
                    err,
                )
            finally:
                gate.release()
            started += 1
        else:  # the rest is running in other workers: wait, in case one of them dies
            gate.release()
            time.sleep(search.poll_interval)
    log.info("worker %d: the study holds its %d trials; this worker ran %d", worker, search.n_trials, started)
    return {"worker": worker, "trials_run": started}


class AskGate:
    """An exclusive ``flock`` on ``<study dir>/.ask.lock``, held from counting the study until our trial exists.

    The kernel drops it when the process dies, so it is never left stale; NFS v4 carries it across hosts."""

    def __init__(self, study_dir: str):
        self.path = Path(study_dir) / ".ask.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing the only descriptor drops the lock


def run_trial(
    trial: optuna.Trial, *, search: Search, master_config: DictConfig, config_loader, on_asked=lambda: None
) -> float:
    """The objective: one harness run with the trial's values; its selected validation metric."""
    on_asked()  # the trial exists (RUNNING): other workers may count it and ask for theirs
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trials = trial.study.get_trials(deepcopy=False)
    if is_surplus(trials, trial.number, search.n_trials):
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"the study already holds {search.n_trials} trials")
    frozen = next(t for t in trials if t.number == trial.number)  # a retry's history is in its system attrs
    values = {key: suggest(trial, key, dist) for key, dist in search.space.items()}
    overrides = list(search.fixed) + [format_override(key, value) for key, value in values.items()]
    cfg = compose_trial(config_loader, master_config, overrides, search.study_name, retry_root(frozen))
    trial.set_user_attr("run_dir", str(RunDir.for_config(cfg).path))
    log.info("trial %d: %s", trial.number, " ".join(overrides[len(search.fixed) :]))
    try:  # protocol=reality_check: every fold, the objective their mean (harness.protocols.folds)
        record = run_folds(
            cfg,
            run,
            lambda offset: partial(report_epoch, trial, search.objective, offset=offset),
            [search.objective, *search.record_keys],
        )
    except Exception as err:  # NaN loss, bad config, crash: the trial is FAIL with this reason
        trial.set_user_attr("fail_reason", redact_text(f"{type(err).__name__}: {err}")[:2000])
        raise
    if record.get("fold_run_dirs"):  # the trial's folds (run_dir above is fold 0's)
        trial.set_user_attr("fold_run_dirs", record["fold_run_dirs"])
    for key in search.record_keys:
        if record.get(key) is not None:
            trial.set_user_attr(key, record[key])
    if record["status"] == "pruned":
        raise optuna.TrialPruned(f"pruned at epoch {record['pruned_epoch']}")
    value = record.get(search.objective)
    if value is None or not math.isfinite(value):
        reason = f"the record's {search.objective} is {value}"
        trial.set_user_attr("fail_reason", reason)
        raise ValueError(reason)
    return float(value)


def report_epoch(trial: optuna.Trial, metric: str, epoch: int, val_metrics: dict, offset: int = 0) -> None:
    """The harness's on_evaluate hook: report the validation metric (at step ``offset + epoch``: a fold's epochs
    follow the previous folds'); stop the run if the pruner says so."""
    trial.report(float(val_metrics[metric]), step=offset + int(epoch))
    if trial.should_prune():
        raise RunPruned(epoch)


def compose_trial(config_loader, master_config: DictConfig, overrides: list, study: str, number: int) -> DictConfig:
    """The run config of one trial, composed like a launcher composes a job (groups may be searched too)."""
    cfg = config_loader.load_sweep_config(master_config, list(overrides))
    HydraConfig.instance().set_config(cfg)  # the run's record lists this trial's overrides
    cfg = deepcopy(cfg)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
        cfg.search = {"study": study, "trial": number}  # part of the run directory's hash
    return cfg


def fail_stale_trials(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def worker_number() -> int:
    try:
        return int(HydraConfig.get().job.num)
    except (ValueError, TypeError):
        return 0
