"""Hydra's entry point for the asynchronous Optuna search (the logic lives in harness/search/).

Hydra only instantiates sweepers defined under the ``hydra_plugins`` package, so this thin class is here;
select it with ``override /hydra/sweeper: optuna_async`` in a sweep file (conf/hydra/sweeper/optuna_async.yaml).
Imports stay light: Hydra imports every plugin module at start-up, for every command.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from harness.cli import fail
from harness.errors import HarnessError


class OptunaAsyncSweeper(Sweeper):
    """Launches ``n_workers`` long-lived worker jobs that ask -> run -> tell until the study holds ``n_trials``."""

    def __init__(self, **spec: Any) -> None:
        self.spec = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in spec.items()
        }
        self.hydra_context = None
        self.config = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        # run.py's task function is not used: each launched job is a search worker (harness.search.worker.work)
        # that runs many trials through harness.run with a pruning hook.
        self.hydra_context = hydra_context
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from harness.search.driver import run_search  # lazy: Hydra imports every sweeper plugin at start-up

        try:
            return run_search(self.spec, arguments, hydra_context=self.hydra_context, config=self.config)
        except HarnessError as err:  # a user error: one line, exit code 2, nothing launched
            fail(str(err))
