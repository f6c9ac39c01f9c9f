"""Where this process sits in a multi-process run, and the process group that joins the processes.

A run on N processes is started by one of three launchers; each describes the process in environment
variables, which ``launch_from_env`` reads (training code never imports submitit):

    torchrun / run.py's own spawning   RANK, WORLD_SIZE, LOCAL_RANK, GROUP_RANK, MASTER_ADDR, MASTER_PORT
    SLURM (srun, as submitit starts    SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_NODEID,
    the tasks of a job)                SLURM_STEP_NODELIST (its first host is the rendezvous), SLURM_JOB_ID
                                       (the port, 20000 + id mod 10000, unless MASTER_PORT is set)
    nothing of the above               one process (world size 1)

SLURM variables count only inside a job step started by srun (SLURM_STEP_NUM_TASKS): a plain ``python run.py``
in an allocation of several tasks is one process, not rank 0 of a job that never starts its other ranks.

``init_world`` joins the process group: NCCL when the run trains on CUDA, gloo on the CPU, with a timeout on
every collective, so that a rank that hangs takes the job down after ``timeout_s`` instead of never. A rank
that dies is noticed sooner (gloo: at once, the peer's socket closes). ``lost_peer`` turns the backend's
error into one line (:class:`RankLostError`), which the run's record carries.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.errors import ConfigError, HarnessError

SLURM_PORT_BASE, SLURM_PORT_SPAN = 20000, 10000


class RankLostError(HarnessError):
    """Another process of the run died or stopped answering: the whole run stops (one line in its record)."""


@dataclass(frozen=True)
class Launch:
    """This process's place in the run, as its launcher described it."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0
    source: str = "single"  # single | torchrun | slurm


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch:
    """Read torchrun's, else srun's, variables; neither: one process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing and int(env["WORLD_SIZE"]) > 1:
            raise ConfigError(
                f"RANK and WORLD_SIZE are set but {', '.join(missing)} not; start the processes with "
                f"torchrun, or let run.py start them (trainer.devices=N)"
            )
        return Launch(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 0)),
            source="torchrun",
        )
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        if "MASTER_PORT" in env:
            port = int(env["MASTER_PORT"])
        else:
            port = SLURM_PORT_BASE + int(env.get("SLURM_JOB_ID", "0")) % SLURM_PORT_SPAN
        return Launch(
            rank=int(env["SLURM_PROCID"]),
            world_size=int(env["SLURM_STEP_NUM_TASKS"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=env.get("MASTER_ADDR") or first_host(nodes),
            master_port=port,
            source="slurm",
        )
    return Launch()


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list: ``gpu[003-005,9],cpu1`` -> ``gpu003``; empty -> 127.0.0.1."""
    nodelist = nodelist.strip()
    if not nodelist:
        return "127.0.0.1"
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?([^,]*)", nodelist)
    prefix, ranges, suffix = m.group(1), m.group(2), m.group(3)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return f"{prefix}{first}{suffix}"


@dataclass(frozen=True)
class World:
    """The joined processes as the training code sees them (one process: rank 0 of 1, no group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # nccl | gloo; None for one process
    group: object = None  # a second group for the gathers of the loss (see collectives.py)
    source: str = "single"
    timeout_s: float = 0.0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_rank_device(spec: str, local_rank: int, world_size: int) -> torch.device:
    """This rank's device: ``cuda:<local_rank mod visible GPUs>`` for CUDA runs, else the CPU.

    Two ranks of a node sharing one GPU is refused (NCCL cannot, and it would halve each rank's speed).
    """
    wants_cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    if not wants_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec} but no CUDA device is available; use trainer.device=auto or cpu")
    visible = torch.cuda.device_count()
    if world_size > 1 and local_rank >= visible:
        raise ConfigError(
            f"local rank {local_rank} has no GPU of its own ({visible} visible on this node); set "
            f"trainer.devices to at most the GPUs per node ({visible})"
        )
    return torch.device("cuda", local_rank % visible)


def init_world(launch: Launch, device_spec: str = "auto", timeout_s: float = 1800.0) -> World:
    """Join the process group of a multi-process run (a no-op for one process)."""
    device = pick_rank_device(device_spec, launch.local_rank, launch.world_size)
    if launch.world_size <= 1:
        return World(device=device, source=launch.source)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=float(timeout_s))
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=timeout,
        )
    # The loss's gathers run inside backward, beside DDP's own bucket all-reduces: a group of their own keeps the
    # two streams of collectives from being paired with each other.
    group = dist.new_group(backend=backend, timeout=timeout)
    return World(
        rank=launch.rank,
        world_size=launch.world_size,
        local_rank=launch.local_rank,
        device=device,
        backend=backend,
        group=group,
        source=launch.source,
        timeout_s=float(timeout_s),
    )


def close_world(world: World) -> None:
    """Leave the process group while the interpreter is whole.

    The groups are destroyed, then what still holds them (the DDP wrapper's reducer and its last works, which sit in
    reference cycles) is collected now: left to the interpreter's exit, gloo's C++ side outlives Python and the
    process can abort after its run finished ("terminate called without an active exception", SIGABRT).
    """
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


# What the backends say when a peer is gone (gloo: the socket closed or the read timed out; NCCL: the watchdog).
_LOST = re.compile(
    r"Connection closed by peer|Connection reset by peer|Broken pipe|Timed out|timed out|[Tt]imeout|"
    r"NCCL (?:error|communicator was aborted)|ProcessGroup\w* (?:is )?(?:aborted|terminated)|"
    r"Socket Timeout",
    re.ASCII,
)


def lost_peer(exc: BaseException, world: World) -> RankLostError | None:
    """The one-line error for a collective that failed because another rank died or hung; None otherwise."""
    if not world.distributed or not isinstance(exc, RuntimeError) or isinstance(exc, HarnessError):
        return None
    text = str(exc)
    if not _LOST.search(text):
        return None
    detail = re.sub(r"^\[[^\]]*\]\s*", "", text.strip().splitlines()[0]).split(". ")[0]
    return RankLostError(
        f"rank {world.rank} of {world.world_size}: another process of this run died or stopped "
        f"answering ({world.backend}: {detail}); the run is stopped, see the other ranks' logs"
    )
