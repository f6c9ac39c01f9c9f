"""The processes of one run: join the ones SLURM or torchrun started, or start them here.

    must_spawn(cfg)      trainer.devices x trainer.nodes > 1, and no launcher started this process as a rank
    run_local(cfg)       ``python run.py trainer.devices=N``: start the N ranks on this machine
                         (harness.distributed.spawn), wait, return rank 0's record; raise the root failure
    joined(cfg)          this process as one rank: check that the launcher started as many processes as the
                         config asks for, join the process group (closing it afterwards if it opened it), the
                         threads the job's CPUs allow (harness.runtime.threads), only rank 0's informational log lines

A run on N processes needs no Optuna pruning hook (``on_evaluate``): a search trains its trials on one process.
"""

from __future__ import annotations

import contextlib
import logging

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log
from omegaconf import DictConfig, OmegaConf

from harness.config import world_size_of
from harness.distributed import World, barrier, close_world, init_world, launch_from_env
from harness.distributed.spawn import run_processes
from harness.errors import ConfigError
from harness.rundir import identity
from harness.rundir.run_dir import RunDir
from harness.runtime import threads

log = logging.getLogger(__name__)


def must_spawn(cfg: DictConfig) -> bool:
    return world_size_of(cfg) > 1 and launch_from_env().world_size == 1


def check_no_hook(cfg: DictConfig, on_evaluate) -> None:
    if on_evaluate is not None and world_size_of(cfg) > 1:
        raise ConfigError(
            f"a search trains each trial on one process, not trainer.devices x trainer.nodes = "
            f"{world_size_of(cfg)}; set trainer.devices=1 trainer.nodes=1"
        )


def run_local(cfg: DictConfig, on_evaluate=None, target=None) -> dict:
    """Start this run's processes on this machine, each calling ``target(cfg)`` (harness.training.task.run), and
    wait for them (the agent holds no process group)."""
    check_no_hook(cfg, on_evaluate)
    n = world_size_of(cfg)
    if int(cfg.trainer.nodes) > 1:
        raise ConfigError(
            f"trainer.nodes={cfg.trainer.nodes} needs a launcher that starts the processes on every "
            f"node: hydra/launcher=slurm, or torchrun on each node; run.py alone starts one node's"
        )
    identity.forget_data()
    rd = RunDir.for_config(cfg)
    previous = rd.finished(bool(cfg.trainer.rerun))
    if previous is not None:
        log.info("already finished, skipped: %s", rd.path)
        return previous
    log.info("starting %d processes for %s", n, rd.path)
    run_processes(rank_main, (target, cfg, hydra_config()), n, grace_s=float(cfg.trainer.dist_timeout_s) + 60)
    return rd.record()


def hydra_config():
    """This Hydra job's own config (overrides, logging), for the ranks to see the same job; None outside Hydra."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def rank_main(target, cfg: DictConfig, hydra_cfg) -> None:
    """One rank started by ``run_local``: the agent's Hydra job (for the record's overrides and the console log
    format), then ``target(cfg)``: the run."""
    if hydra_cfg is not None:
        HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra_cfg}))
        configure_log(hydra_cfg.job_logging, hydra_cfg.verbose)
    else:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    target(cfg)


@contextlib.contextmanager
def joined(cfg: DictConfig, on_evaluate=None):
    """This process as one rank of the run's processes (a world of one when there is one)."""
    check_no_hook(cfg, on_evaluate)
    launch, n = launch_from_env(), world_size_of(cfg)
    if launch.world_size != n:
        raise ConfigError(
            f"this process is rank {launch.rank} of {launch.world_size} ({launch.source}) but "
            f"trainer.devices x trainer.nodes = {n}; ask the launcher for {n} processes, or set "
            f"trainer.devices={max(launch.world_size // int(cfg.trainer.nodes), 1)}"
        )
    with threads.applied(threads.plan_for(cfg, launch.source)):  # the job's CPUs, shared by its processes
        if n == 1:
            yield World(source=launch.source)
            return
        with _process_group(cfg, launch) as world:
            yield world


@contextlib.contextmanager
def _process_group(cfg: DictConfig, launch):
    owned = not dist.is_initialized()
    world = init_world(launch, str(cfg.trainer.device), float(cfg.trainer.dist_timeout_s))
    quiet = logging.getLogger("harness")
    level = quiet.level
    if not world.is_main:  # one console line per epoch: rank 0's
        quiet.setLevel(logging.WARNING)
    try:
        yield world
        # Every rank finished: meet before the teardown, so no rank closes its sockets while another still uses them.
        # A peer lost now is said by its own exit code to the agent; this rank's run is done and recorded.
        try:
            barrier(world)
        except RuntimeError as exc:
            log.warning("rank %d: a peer left before the end of the run (%s)", world.rank, str(exc).splitlines()[0])
    finally:
        quiet.setLevel(level)
        if owned:
            close_world(world)
