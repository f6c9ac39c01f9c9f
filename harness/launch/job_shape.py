"""What one job of a sweep asks the scheduler for: processes per node, nodes, and a GPU for each process.

A run with ``trainer.devices=N trainer.nodes=M`` is one SLURM job of M nodes with N tasks each
(``--nodes=M --ntasks-per-node=N``); srun starts the N x M tasks and each becomes one rank
(harness.distributed reads SLURM_PROCID / SLURM_LOCALID). Every process needs a GPU of its own when the job
asks for GPUs, so ``gpus_per_node`` (or the count in ``gres``, e.g. ``gpu:a100:4``) must equal N: more GPUs
than processes would sit idle, fewer would be shared. ``gpus_per_node: null`` (and no ``gres``) runs CPU
processes (gloo), as on the local test cluster. The checks run before anything is submitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omegaconf import DictConfig

from harness.errors import ConfigError


@dataclass(frozen=True)
class Shape:
    devices: int = 1  # processes (tasks) per node
    nodes: int = 1

    @classmethod
    def of(cls, config: DictConfig) -> Shape:
        trainer = config.get("trainer") or {}
        return cls(int(trainer.get("devices", 1) or 1), int(trainer.get("nodes", 1) or 1))


def gpus_asked(gpus_per_node, gres) -> int | None:
    """GPUs per node the launcher settings ask for: ``gpus_per_node``, else the count in ``gres``; None: none."""
    if gpus_per_node:
        return int(gpus_per_node)
    match = re.fullmatch(r"gpu(?::[^:,]+)?:(\d+)", str(gres or "").strip())
    return int(match.group(1)) if match else None


def slurm_resources(shape: Shape, gpus_per_node=None, gres=None, tasks_per_node=None, nodes=None) -> dict:
    """The launcher parameters of a job of this shape (``tasks_per_node``, ``nodes``), or one line saying why not.
    ``tasks_per_node`` / ``nodes`` set on the launcher itself must agree (trainer.devices / nodes decide them)."""
    for key, value, wanted, knob in (
        ("tasks_per_node", tasks_per_node, shape.devices, "devices"),
        ("nodes", nodes, shape.nodes, "nodes"),
    ):
        if value not in (None, 1, wanted):
            raise ConfigError(
                f"hydra.launcher.{key}={value} but trainer.{knob}={wanted}: a run's processes are set "
                f"by trainer.{knob}; set trainer.{knob}={value} and leave hydra.launcher.{key} alone"
            )
    gpus = gpus_asked(gpus_per_node, gres)
    asked = f"hydra.launcher.gpus_per_node={gpus_per_node}" if gpus_per_node else f"hydra.launcher.gres={gres}"
    if gpus is not None and gpus > shape.devices:
        raise ConfigError(
            f"{asked} asks for {gpus} GPUs per node but trainer.devices={shape.devices} starts "
            f"{shape.devices} processes per node, one GPU each: {gpus - shape.devices} would sit idle; "
            f"set trainer.devices={gpus} (or ask for {shape.devices} GPUs)"
        )
    if gpus is not None and gpus < shape.devices:
        raise ConfigError(
            f"trainer.devices={shape.devices} processes per node need a GPU each but {asked} asks for "
            f"{gpus}; set hydra.launcher.gpus_per_node={shape.devices} (or null for CPU processes)"
        )
    return {"tasks_per_node": shape.devices, "nodes": shape.nodes}
