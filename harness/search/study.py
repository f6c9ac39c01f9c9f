"""A search's settings, its storage, and the accounting that keeps a study at exactly its total of trials.

Storage (``storage:`` in the sweeper config; the file lives in the study directory under ``results/``):

    sqlite   <study_dir>/study.db (Optuna RDBStorage). Safe for any number of workers on ONE host (local,
             submitit_local, one SLURM node). Not over NFS/Lustre from several hosts: SQLite's file locks
             are not reliable there and the database can be corrupted.
    journal  <study_dir>/study.journal (Optuna JournalFileBackend with its open-lock; a torn last line is repaired
             under that lock: harness/search/journal.py). Safe for workers on
             SEVERAL hosts that share a POSIX file system (NFS, Lustre, GPFS), no server needed. Optuna 5 gives
             the journal no heartbeat; :class:`JournalHeartbeatStorage` adds one (hosts' clocks must agree to
             well within the grace period, as NTP keeps them).
    env      a database URL (PostgreSQL, MySQL) read from the environment variable named by ``storage_env``
             (default HARNESS_OPTUNA_STORAGE), for clusters. The URL (and its password) never enters a config,
             a record or a report; the study directory only says which variable to read.

Counting: a study "holds" the trials that are COMPLETE, PRUNED or FAIL, except a failed attempt that was
retried (its retry carries on the same logical trial) and a surplus trial (two workers asked for the last
slot at once; the later one is marked FAIL with user attribute ``surplus`` and never ran). Workers count and ask
under one lock on the study directory (``worker.AskGate``), so surplus trials arise only where that directory
is not shared between the workers' hosts.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from hydra.utils import instantiate
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from harness.errors import ConfigError
from harness.redact import redact_text
from harness.search.journal import RepairingOpenLock

STORAGES = ("sqlite", "journal", "env")
SEARCH_FILE = "search.yaml"  # the study directory's description of the search (no secrets)


@dataclass
class Search:
    """Everything a worker needs to take part in a study; plain data, pickled to SLURM jobs."""

    study_name: str
    study_dir: str
    objective: str  # record key optimised, e.g. val/map@r (the run's selection metric)
    direction: str  # maximize | minimize
    space: dict  # override key -> optuna distribution
    fixed: list  # overrides every trial gets (the command line's plain ones)
    n_trials: int = 20  # the study's total, counted over every call
    n_workers: int = 2
    storage: str = "sqlite"
    storage_env: str = "HARNESS_OPTUNA_STORAGE"
    sampler: dict | None = None  # {_target_: optuna.samplers.TPESampler, ...}
    pruner: dict | None = None  # {_target_: optuna.pruners.MedianPruner, ...}; None: never prune
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int | None = 2
    poll_interval: float = 5.0
    record_keys: list = field(default_factory=lambda: ["test/map@r", "test/recall@1"])
    identity: dict = field(default_factory=dict)  # what every trial shares (driver.study_identity)


def check_search(search: Search) -> None:
    if search.storage not in STORAGES:
        raise ConfigError(f"hydra.sweeper.storage={search.storage} is unknown; use one of {', '.join(STORAGES)}")
    if not search.study_name or any(c in search.study_name for c in "/\\ ="):
        raise ConfigError(f"hydra.sweeper.study_name={search.study_name!r}: use a plain name, e.g. tune_eps")
    if int(search.n_trials) < 1 or int(search.n_workers) < 1:
        raise ConfigError(f"hydra.sweeper.n_trials={search.n_trials} and n_workers={search.n_workers} must be >= 1")
    if not search.space:
        raise ConfigError(
            "the search space is empty; set hydra.sweeper.params, e.g. "
            "regularizer.antico_pair.eps: tag(log, interval(0.01, 2.0))"
        )
    if int(search.heartbeat_interval) < 1 or int(search.grace_period) <= int(search.heartbeat_interval):
        raise ConfigError(
            f"hydra.sweeper.grace_period={search.grace_period} must exceed "
            f"heartbeat_interval={search.heartbeat_interval} (>= 1 s), e.g. 3x"
        )
    if search.storage == "env" and not os.environ.get(search.storage_env):
        raise ConfigError(
            f"hydra.sweeper.storage=env but ${search.storage_env} is not set; export it as a "
            f"database URL, e.g. postgresql://user:password@host/optuna"
        )


# ----------------------------------------------------------------------------------------------- storage
class JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus the trial heartbeat Optuna 5 implements only for RDBStorage.

    The worker's heartbeat thread (started by ``study.optimize``) writes the wall-clock time into the trial's
    system attribute ``heartbeat``; a RUNNING trial whose last beat (or start) is older than ``grace_period``
    seconds is stale, and ``optuna.storages.fail_stale_trials`` fails it and runs the retry callback.
    """

    def __init__(self, backend, heartbeat_interval: int, grace_period: int, stale_trial_callback=None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())
        except UpdateFinishedTrialError:  # the trial ended between two beats
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            last = max(float(trial.system_attrs.get("heartbeat", 0.0)), started)
            if now - last > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_trial_callback


def open_storage(search: Search):
    """The study's storage, with a heartbeat: a trial whose worker died is failed and retried (max_retry)."""
    Path(search.study_dir).mkdir(parents=True, exist_ok=True)
    beat = dict(heartbeat_interval=int(search.heartbeat_interval), grace_period=int(search.grace_period))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=search.max_retry)
        if search.storage == "journal":
            path = str(Path(search.study_dir) / "study.journal")
            lock = RepairingOpenLock(path)  # a torn tail is repaired under the lock (harness/search/journal.py)
            backend = JournalFileBackend(path, lock_obj=lock)
            lock.check_all()
            return JournalHeartbeatStorage(backend, stale_trial_callback=retry, **beat)
        if search.storage == "env":
            url = os.environ.get(search.storage_env)
            if not url:
                raise ConfigError(f"${search.storage_env} is not set; export the study's database URL")
        else:
            url = f"sqlite:///{Path(search.study_dir).resolve() / 'study.db'}"
        # a generous SQLite lock timeout: several workers write trials and heartbeats to one file
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        return rdb_storage(
            url, storage_label(search), engine_kwargs=engine, heartbeat_stale_trial_callback=retry, **beat
        )


# the pip package of each database driver SQLAlchemy may import (by the module name it failed to import)
DRIVER_PACKAGES = {
    "psycopg": '"psycopg[binary]"',
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysql": "mysql-connector-python",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}


def rdb_storage(url: str, label: str, **kwargs) -> RDBStorage:
    """Optuna's RDBStorage, its failures as one line: a missing driver names its pip package; a wrong URL or an
    unreachable server names where the URL came from (never the URL: it may hold a password)."""
    # lazy: sqlalchemy (installed with optuna, ~0.1 s) only for a database storage
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        return RDBStorage(url, **kwargs)
    except ImportError as err:
        cause = err.__cause__ if isinstance(err.__cause__, ImportError) else err
        module = (getattr(cause, "name", None) or "").split(".")[0]
        if not module:
            raise
        scheme = url.split(":", 1)[0]
        raise ConfigError(
            f"the {scheme} storage in {label} needs the database driver {module!r}, which is not "
            f"installed: pip install {DRIVER_PACKAGES.get(module, module)}"
        ) from None
    except ArgumentError:
        raise ConfigError(
            f"the storage URL in {label} is not a database URL; use e.g. postgresql://user:password@host:5432/optuna"
        ) from None
    except SQLAlchemyError as err:
        reason = scrub(redact_text(" ".join(str(getattr(err, "orig", None) or err).split())), url)[:300]
        raise ConfigError(f"cannot open the study storage in {label}: {reason}") from None


def storage_label(search: Search) -> str:
    """Where the study lives, for logs and reports: never the URL itself."""
    if search.storage == "env":
        return f"${search.storage_env}"
    name = "study.journal" if search.storage == "journal" else "study.db"
    return str(Path(search.study_dir) / name)


def create_study(search: Search) -> optuna.Study:
    """Create the study, or load it when it exists (resume); its direction must match the search's."""
    study = optuna.create_study(
        study_name=search.study_name, storage=open_storage(search), direction=search.direction, load_if_exists=True
    )
    if study.direction.name.lower() != search.direction:
        raise ConfigError(
            f"study {search.study_name} in {storage_label(search)} was created to "
            f"{study.direction.name.lower()} but selection.mode asks to {search.direction}; "
            f"use another hydra.sweeper.study_name"
        )
    name_objective(study, search.objective)
    return study


def name_objective(study: optuna.Study, objective: str) -> None:
    """Name the study's value (optuna-dashboard then labels it ``val/map@r``, not "Objective 0")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # experimental since Optuna 3.2, unchanged in 5
        if study.metric_names != [objective]:
            study.set_metric_names([objective])


def load_study(search: Search, worker: int = 0) -> optuna.Study:
    """The study as one worker sees it: its own sampler seed (see build_sampler) and the shared pruner."""
    storage = open_storage(search)
    existing = len(optuna.load_study(study_name=search.study_name, storage=storage).get_trials(deepcopy=False))
    return optuna.load_study(
        study_name=search.study_name,
        storage=storage,
        sampler=build_sampler(search.sampler, worker, existing),
        pruner=build_pruner(search.pruner),
    )


def build_sampler(spec: dict | None, worker: int = 0, existing: int = 0):
    """The sampler of one worker. A configured seed is mixed with the worker's number and the study's size when
    it starts: workers (and later commands resuming the study) must not replay one random sequence, which would
    propose the same points again during the sampler's random start-up trials."""
    if not spec:
        return None  # Optuna's default (TPE)
    spec = dict(spec)
    if spec.get("seed") is not None:
        spec["seed"] = int(np.random.SeedSequence([int(spec["seed"]), worker, existing]).generate_state(1)[0])
    return instantiate(spec)


def build_pruner(spec: dict | None):
    return instantiate(spec) if spec else optuna.pruners.NopPruner()


# ----------------------------------------------------------------------------------------------- counting
@dataclass
class Tally:
    done: list  # COMPLETE, PRUNED and counted FAIL trials
    running: list
    waiting: list  # retries of trials whose worker died, waiting for a worker

    @property
    def claimed(self) -> int:
        return len(self.done) + len(self.running) + len(self.waiting)


def retried_numbers(trials) -> set:
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(trials) -> list:
    """The trials that hold a slot of the study's total (see the module docstring)."""
    retried = retried_numbers(trials)
    return [t for t in trials if t.number not in retried and not t.user_attrs.get("surplus")]


def tally(trials) -> Tally:
    live = counted(trials)
    return Tally(
        done=[t for t in live if t.state.is_finished()],
        running=[t for t in live if t.state == TrialState.RUNNING],
        waiting=[t for t in live if t.state == TrialState.WAITING],
    )


def is_surplus(trials, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` came after the study already held ``n_trials`` (a lost race for the last slot)."""
    return sum(1 for t in counted(trials) if t.number < number) >= n_trials


def retry_root(trial) -> int:
    """The number of the original trial a retry carries on (the trial's own number when it is no retry)."""
    history = trial.system_attrs.get("retry_history") or []
    return int(history[0]) if history else int(trial.number)


def fail_reason(trial) -> str:
    """Why a FAIL trial failed, as far as the storage knows."""
    if trial.state != TrialState.FAIL:
        return ""
    if trial.user_attrs.get("surplus"):
        return "surplus: the study already held its total when this trial was asked"
    if "fail_reason" in trial.user_attrs:
        return str(trial.user_attrs["fail_reason"])
    return "worker lost: no heartbeat within the grace period (killed, pre-empted or out of memory)"


def scrub(text: str, url: str) -> str:
    """``text`` without any piece of ``url``'s password (a driver may quote a mis-parsed URL's host, e.g. the
    part of an unencoded password after its '@')."""
    head, sep, rest = url.partition("://")
    userinfo = rest.rsplit("@", 1)[0] if sep and "@" in rest else ""
    password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
    pieces = {password, *password.split("@"), *password.replace("%40", "@").split("@")}
    for piece in sorted((p for p in pieces if len(p) >= 2), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text
