"""Optuna search over any config value, on Optuna >= 5 directly (no hydra-optuna-sweeper).

    python run.py -m sweep=tune_eps                              # workers in-process, or
    python run.py -m sweep=tune_eps hydra/launcher=submitit_local   # parallel local processes / slurm jobs
    python -m harness.search results/search/tune_eps             # reports again, on demand

space.py   Hydra sweep syntax -> Optuna distributions; trial values -> overrides
study.py   the search's settings, storage (sqlite / journal / env URL) with heartbeat, trial accounting
worker.py  one worker: ask -> harness.run(cfg, on_evaluate=<pruning hook>) -> tell, until the total is reached
driver.py  the command: check, create or resume the study, launch workers with the Hydra launcher, report
report.py  best.yaml, trials.csv and plots beside the study
The Hydra entry point is hydra_plugins/harness_search/optuna_async_sweeper.py. Training code never imports this.
"""
