"""The k fold runs of one Reality Check configuration, as an Optuna trial runs them (harness.search.worker).

A trial under ``protocol=reality_check`` is one configuration: it trains every fold (each an ordinary run with its
own directory, skipped when finished, resumed when interrupted), in order, and its value is the mean over the folds
of the selected validation metric (Musgrave et al. 2020: the objective of the hyperparameter search). The pruner
sees fold f's epoch e as step ``f * epochs + e``, so trials are compared fold by fold; a pruned fold ends the trial.
Outside a search, a grid runs the folds as separate jobs (``protocol.fold=0,1,2,3``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict


def fold_configs(cfg: DictConfig) -> list:
    """One config per fold of a Reality Check configuration (``protocol.fold`` set); ``[cfg]`` otherwise."""
    if OmegaConf.select(cfg, "protocol.name", default="clean") != "reality_check":
        return [cfg]
    out = []
    for fold in range(int(cfg.protocol.folds)):
        one = cfg.copy()
        with open_dict(one):
            one.protocol.fold = fold
        out.append(one)
    return out


def run_folds(cfg: DictConfig, run: Callable, on_evaluate_for: Callable[[int], Callable], keys=()) -> dict:
    """``run`` every fold of ``cfg`` (``on_evaluate_for(step_offset)`` gives each its pruning hook); the record of
    the whole: the mean of ``keys`` over the folds, ``pruned`` as soon as one fold is, ``fold_run_dirs``."""
    configs = fold_configs(cfg)
    if len(configs) == 1:
        return run(cfg, on_evaluate=on_evaluate_for(0))
    records = []
    for i, one in enumerate(configs):
        record = run(one, on_evaluate=on_evaluate_for(i * int(one.trainer.epochs)))
        records.append(record)
        if record.get("status") != "finished":
            return {**record, "folds_run": i + 1}
    out = {"status": "finished", "folds": len(records), "fold_run_dirs": [r.get("run_dir") for r in records]}
    for key in keys:
        values = [r.get(key) for r in records]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = float(np.mean(values))
    return out
