"""One run, top to bottom: ``run(cfg) -> record``.

    validate the config (everything that can be known before building: a refused run leaves no directory)
    the run directory (harness.rundir): its identity; skip a finished run, resume an unfinished one, one writer
    build the parts; fit: train, select on validation, test the selected epoch; close the record

The test split never drives a choice: the epoch is selected on the class-disjoint validation split.
"""

from __future__ import annotations

import logging
from functools import partial

from omegaconf import DictConfig

from harness.cli import format_summary
from harness.config import validate_config
from harness.distributed import World
from harness.inspect import pictures_at_end, pictures_wanted
from harness.launch import processes
from harness.protocols import embeddings as test_embeddings
from harness.rundir import identity
from harness.rundir.run_dir import RunDir
from harness.training.build import build, build_data
from harness.training.fit import Plan, fit

log = logging.getLogger(__name__)


def run(cfg: DictConfig, on_evaluate=None) -> dict:
    """Train, select on validation, test, and record one run. ``on_evaluate(epoch, val_metrics)`` may
    raise :class:`~harness.errors.RunPruned` (the Optuna driver's pruning hook).

    ``trainer.devices`` x ``trainer.nodes`` > 1: one run on that many processes. Started by SLURM or torchrun,
    this process is one of them (harness.distributed); started alone, it starts them (harness.launch.processes)."""
    validate_config(cfg)
    if processes.must_spawn(cfg):
        return processes.run_local(cfg, on_evaluate, target=run)
    with processes.joined(cfg, on_evaluate) as world:
        return run_in(cfg, world, on_evaluate)


def run_in(cfg: DictConfig, world: World, on_evaluate=None) -> dict:
    """One run in this process, alone or as one rank of ``world``: rank 0 holds the run directory and writes it;
    the others follow its decisions (skip, resume, fail)."""
    plan = Plan.from_config(cfg)
    if not identity.data_available(cfg):  # the loader's own line (where to get the data), before any directory
        build_data(cfg.dataset)
    identity.forget_data()  # the data is fingerprinted afresh for every run (and once within it)
    rd = RunDir.for_config(cfg, world)
    with rd.attempt(cfg, world) as attempt:
        if not attempt.skipped:
            parts = build(cfg, world=world)
            attempt.begin(parts)
            fitted = fit(parts, plan, attempt, on_evaluate)
            if world.is_main and test_embeddings.wanted(cfg):  # protocol=reality_check: the concatenated score
                fitted.results.update(test_embeddings.save_test_embeddings(attempt.path, fitted.test))
            draw = pictures_wanted(cfg.eval.get("pictures", "auto"), parts.data.vector_inputs)
            map_method = cfg.eval.get("picture_map", "umap")
            attempt.finish(fitted.results, partial(pictures_at_end, parts=parts, fitted=fitted, map_method=map_method)
                           if draw else None)  # fmt: skip
    if attempt.record is not None and attempt.record.get("status") == "finished":
        log.info("%s", format_summary(attempt.record))
    return attempt.record
