"""7. Data-parallel scaling: one run's training step on 1, 2, 4, 8 processes, at a fixed global batch.

The subject is ``harness.training.step.train_one_epoch`` as a run on N processes executes it (harness.distributed:
each process embeds 1/N of every global batch, the losses see the gathered batch, DDP all-reduces the
network's gradients in buckets during the backward pass, the proxies' gradients are averaged). The global
batch is the method, so it stays fixed (strong scaling): ideally N processes take 1/N of the time. Per N, the
processes are started as ``python run.py trainer.devices=N`` starts them (harness.distributed.spawn) and rank 0
times ``repeats`` epochs of ``steps`` steps (the same batches each time) after one warm-up epoch.

    speedup    = time per epoch on 1 process / on N processes
    efficiency = speedup / N              (1.0: perfect scaling)
    per-process throughput = global batch x steps / time / N    (samples/s per process)

On CUDA each process owns a GPU (NCCL; N up to the GPUs visible), bf16 autocast as a run uses it, and the model
is a ResNet-18 on 64-px images of a generated CUB-layout tree (written for a GPU machine, not yet run on one);
on the CPU (gloo) the digits MLP (2 x 1024 hidden, batch 240) with one intra-op thread per process at every N
(so 1 process uses one core): with more processes than cores the figure measures the oversubscription, and
the notes say so. The N runs are timed one after another, not interleaved: on a loaded machine compare the
ratios of one bench run only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from harness.bench.common import figure, stats
from harness.bench.pipeline import write_cub_tree
from harness.distributed.spawn import run_processes

CPU_CONFIG = ["backbone.hidden=[1024,1024]", "sampler.batch_size=240", "sampler.m=80", "regularizer=none"]
GPU_CONFIG = [
    "dataset=cub200",
    "dataset.val_fraction=0.1",
    "backbone=resnet18",
    "dataset.transform.size=64",
    "dataset.transform.resize=73",
    "sampler.batch_size=240",
    "sampler.m=6",
    "trainer.num_workers=4",
    "regularizer=none",
]  # on the pipeline benchmark's generated CUB-layout tree


def timed_rank(overrides: list, steps: int, repeats: int, out: str) -> None:
    """One process of the run: build as harness.run does, time ``repeats`` epochs, rank 0 writes the times."""
    import time

    from harness.bench.common import synchronize
    from harness.bench.training_loop import compose_config
    from harness.distributed import close_world, init_world, launch_from_env
    from harness.training.build import build
    from harness.training.fit import Plan
    from harness.training.step import Step, train_one_epoch

    launch = launch_from_env()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # one core per process, at every N (torchrun's OMP_NUM_THREADS=1)
    world = init_world(launch, "auto", timeout_s=600)
    try:
        cfg = compose_config([*overrides, f"sampler.batches_per_epoch={steps}", f"trainer.devices={launch.world_size}"])
        parts = build(cfg, world=world)
        step = Step.of(parts, Plan.from_config(parts.cfg))
        times = []
        for r in range(repeats + 1):
            parts.sampler.set_epoch(1)
            synchronize(parts.device)
            t0 = time.perf_counter()
            train_one_epoch(step, parts.loader, 1)
            synchronize(parts.device)
            if r:  # the first epoch warms up (allocations, DDP's bucket rebuild)
                times.append(time.perf_counter() - t0)
        if world.is_main:
            Path(out).write_text(
                json.dumps(
                    {
                        "times": times,
                        "batch": int(cfg.sampler.batch_size),
                        "threads": torch.get_num_threads(),
                        "device": str(parts.device),
                    }
                )
            )
    finally:
        close_world(world)


def run(quick: bool = False) -> dict:
    cuda = torch.cuda.is_available()
    counts = [n for n in ((1, 2) if quick else (1, 2, 4, 8)) if not cuda or n <= torch.cuda.device_count()]
    steps, repeats = (5, 2) if quick else (10, 3)
    overrides = CPU_CONFIG
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        if cuda:
            overrides = [*GPU_CONFIG, f"dataset.root={write_cub_tree(Path(tmp) / 'cub', per_class=30)}"]
        for n in counts:
            out = Path(tmp) / f"{n}.json"
            run_processes(timed_rank, (overrides, steps, repeats, str(out)), n, grace_s=120)
            measured[n] = json.loads(out.read_text())
    base = measured[1]["times"]
    figures, notes = [], []
    cores = os.cpu_count() or 1
    for n in counts[1:]:
        fig = figure(
            f"{n} processes vs 1, global batch {measured[n]['batch']} ({'NCCL' if cuda else 'gloo'})",
            f"{n} processes",
            "1 process",
            measured[n]["times"],
            base,
            show="speedup",
        )
        fig["efficiency"] = stats([s / n for s in [b / t for b, t in zip(base, measured[n]["times"])]])
        figures.append(fig)
    for n in counts:
        per_epoch = stats(measured[n]["times"])["median"]
        throughput = measured[n]["batch"] * steps / per_epoch
        speedup = stats(base)["median"] / per_epoch
        notes.append(
            f"{n} process(es): {throughput / n:.0f} samples/s per process, speedup {speedup:.2f}, "
            f"efficiency {speedup / n:.2f} ({measured[n]['threads']} torch threads each"
            f"{'' if cuda or n <= cores else f'; {n} processes on {cores} cores: oversubscribed'})"
        )
    return {
        "figures": figures,
        "notes": notes,
        "ok": True,
        "params": {
            "processes": counts,
            "steps_per_epoch": steps,
            "repeats": repeats,
            "overrides": overrides,
            "device": measured[1]["device"],
            "cores": cores,
        },
    }
