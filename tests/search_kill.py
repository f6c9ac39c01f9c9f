"""Killing a search worker in the middle of a trial, at a point the test controls (used by the search tests).

A trial of the tests' tiny runs trains an epoch in a fraction of a second, less than one look at the study takes,
so the epochs are counted in the trial's own epoch log (a file read in microseconds), not in the study. The study
is read only to find a running trial, its worker and its run directory. Once the log holds ``reported`` epochs the
worker is frozen (SIGSTOP: its trial can neither finish nor report), the log and the record are read again, and the
worker is killed only if the trial is still in the window with no record written; otherwise it is thawed (SIGCONT)
and another trial is awaited.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from optuna.trial import TrialState

from harness.rundir import records


def worker_pid(trial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def epochs_logged(run_dir: Path) -> int:
    """The last trained epoch in the run's epoch log (its row 0 is the untrained network's)."""
    try:
        lines = (run_dir / records.EPOCHS).read_bytes().split(b"\n")[:-1]  # complete lines only
    except FileNotFoundError:
        return 0
    return max((json.loads(line)["epoch"] for line in lines), default=0)


def kill_a_worker_mid_trial(load_study, driver, reported: int = 2, timeout: float = 300, most: int | None = None):
    """SIGKILL the worker of a running trial that has logged ``reported`` epochs (and at most ``most``, so that a
    resumed trial still has an epoch to train) and not finished; the trial, as the study last showed it."""
    deadline = time.time() + timeout
    tried = set()
    while time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
        try:
            running = load_study().get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study is not created yet, or is being written
            continue
        for trial in (t for t in running if t.number not in tried and "run_dir" in t.user_attrs):
            tried.add(trial.number)
            run_dir = Path(trial.user_attrs["run_dir"])
            while epochs_logged(run_dir) < reported and driver.poll() is None and time.time() < deadline:
                if (run_dir / records.RECORD).exists():
                    break
                time.sleep(0.01)
            pid = worker_pid(trial)
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            logged = epochs_logged(run_dir)
            if reported <= logged and (most is None or logged <= most) and not (run_dir / records.RECORD).exists():
                os.kill(pid, signal.SIGKILL)
                return trial
            os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"no trial was caught running with {reported} to {most or 'all'} logged epochs")
