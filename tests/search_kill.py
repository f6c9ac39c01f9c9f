"""Killing a search worker in the middle of a trial, at a point the test controls (used by the search tests).

Polling the study and then sending SIGKILL races the trial: it may finish between the look and the kill.
Here the worker is frozen first (SIGSTOP: its trial can neither finish nor report), the study and the run
directory are read again, and the worker is killed only if its trial is still RUNNING with no record written;
otherwise it is thawed (SIGCONT) and another chance is awaited.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from optuna.trial import TrialState


def worker_pid(trial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def kill_a_worker_mid_trial(load_study, driver, reported: int = 2, timeout: float = 300, most: int | None = None):
    """SIGKILL the worker of a RUNNING trial that has reported ``reported`` epochs (and at most ``most``, so that a
    resumed trial still has an epoch to train) and not finished; the trial."""
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
        try:
            running = load_study().get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study is not created yet
            continue
        for trial in running:
            seen = len(trial.intermediate_values)
            if seen < reported or (most is not None and seen > most) or "run_dir" not in trial.user_attrs:
                continue
            pid = worker_pid(trial)
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            try:
                now = next(t for t in load_study().get_trials() if t.number == trial.number)
            except Exception:  # frozen while it held the storage's write lock: thaw it, look again later
                os.kill(pid, signal.SIGCONT)
                continue
            in_window = most is None or len(now.intermediate_values) <= most
            if (
                now.state == TrialState.RUNNING
                and in_window
                and not (Path(trial.user_attrs["run_dir"]) / "record.json").exists()
            ):
                os.kill(pid, signal.SIGKILL)
                return now
            os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"no trial was caught running with {reported} reported epochs")
