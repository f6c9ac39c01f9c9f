"""7. Data-parallel scaling: one run's training step on 1, 2, 4, 8 processes, at a fixed global batch.

The subject is ``harness.training.step.train_one_epoch`` as a run on N processes executes it (harness.distributed:
each process embeds 1/N of every global batch, the losses see the gathered batch, DDP all-reduces the
network's gradients in buckets during the backward pass, the proxies' gradients are averaged). The global
batch is the method, so it stays fixed (strong scaling): ideally N processes take 1/N of the time.

Every process count is a group of processes started once, as ``python run.py trainer.devices=N`` starts them
(harness.distributed.spawn's variables), built as a run builds, and kept alive: the groups' epochs are then
interleaved round by round like every other figure (a warm-up round, then at least 5 rounds, the order rotating),
while the groups not timed wait blocked on a pipe. One definition of the ratio, used by the table and the notes:

    speedup(N)    = the median over rounds of  t_1 / t_N   (the same round's epochs on 1 and on N processes)
    efficiency(N) = speedup(N) / N                          (1.0: perfect scaling)
    throughput    = global batch x steps / median t_N / N   (samples/s per process)

On CUDA each process owns a GPU (NCCL; N up to the GPUs visible), bf16 autocast as a run uses it, and the model
is a ResNet-18 on 64-px images of a generated CUB-layout tree (written for a GPU machine, not yet run on one);
on the CPU (gloo) the digits MLP (2 x 1024 hidden, batch 240) with one intra-op thread per process at every N
(so 1 process uses one core): with more processes than cores the figure measures the oversubscription, and
the notes say so.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from pathlib import Path

import torch

from harness.bench.common import MIN_ROUNDS, figure, interleave, stats, synchronize
from harness.bench.pipeline import write_cub_tree
from harness.bench.training_loop import compose_config
from harness.distributed import close_world, init_world, launch_from_env
from harness.distributed.spawn import environment, free_port, rank_env
from harness.training.build import build
from harness.training.fit import Plan
from harness.training.step import Step, train_one_epoch

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


def rank_loop(rank: int, n: int, port: int, overrides: list, steps: int, commands, replies) -> None:
    """One process of a group: build as harness.run does, then one epoch (the same batches) per command."""
    os.environ.update(rank_env(rank, n, port))
    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # one core per process, at every N (torchrun's OMP_NUM_THREADS=1)
    world = init_world(launch_from_env(), "auto", timeout_s=600)
    try:
        cfg = compose_config([*overrides, f"sampler.batches_per_epoch={steps}", f"trainer.devices={n}"])
        parts = build(cfg, world=world)
        step = Step.of(parts, Plan.from_config(parts.cfg))
        if rank == 0:
            replies.put({"batch": int(cfg.sampler.batch_size), "threads": torch.get_num_threads(),
                         "device": str(parts.device)})  # fmt: skip
        while commands.get() == "epoch":
            parts.sampler.set_epoch(1)
            train_one_epoch(step, parts.loader, 1)
            synchronize(parts.device)
            if rank == 0:
                replies.put("done")
    finally:
        close_world(world)


class Group:
    """N processes of one run, started once; ``epoch()`` runs one epoch on all of them and returns when rank 0 is
    done (the step ends with collectives, so every rank is then done too)."""

    def __init__(self, n: int, overrides: list, steps: int):
        ctx = mp.get_context("spawn")
        port = free_port()
        self.n = n
        self.commands = [ctx.SimpleQueue() for _ in range(n)]
        self.replies = ctx.SimpleQueue()
        self.procs = []
        for rank in range(n):
            with environment(rank_env(rank, n, port)):
                p = ctx.Process(
                    target=rank_loop,
                    args=(rank, n, port, overrides, steps, self.commands[rank], self.replies),
                    name=f"scaling{n}-rank{rank}",
                )
                p.start()
            self.procs.append(p)
        self.info = self.replies.get()

    def epoch(self) -> None:
        for q in self.commands:
            q.put("epoch")
        if self.replies.get() != "done":
            raise RuntimeError(f"the {self.n}-process group failed")

    def close(self) -> None:
        for q, p in zip(self.commands, self.procs):
            if p.is_alive():
                q.put("stop")
        for p in self.procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
                p.join()


def run(quick: bool = False) -> dict:
    cuda = torch.cuda.is_available()
    counts = [n for n in ((1, 2) if quick else (1, 2, 4, 8)) if not cuda or n <= torch.cuda.device_count()]
    steps = 3 if quick else 10
    overrides = CPU_CONFIG
    groups = {}
    with tempfile.TemporaryDirectory() as tmp:
        if cuda:
            overrides = [*GPU_CONFIG, f"dataset.root={write_cub_tree(Path(tmp) / 'cub', per_class=30)}"]
        try:
            for n in counts:
                groups[n] = Group(n, overrides, steps)
            t = interleave({n: g.epoch for n, g in groups.items()}, MIN_ROUNDS)
        finally:
            for g in groups.values():
                g.close()
    info = groups[1].info
    figures, notes = [], []
    cores = os.cpu_count() or 1
    for n in counts[1:]:
        fig = figure(
            f"{n} processes vs 1, global batch {info['batch']} ({'NCCL' if cuda else 'gloo'})",
            f"{n} processes",
            "1 process",
            t[n],
            t[1],
            show="speedup",
            load=t.load,
        )
        fig["efficiency"] = stats([s / n for s in [b / x for b, x in zip(t[1], t[n])]])
        figures.append(fig)
    for n in counts:
        speedup = 1.0 if n == 1 else next(f for f in figures if f["subject"] == f"{n} processes")["speedup"]["median"]
        throughput = info["batch"] * steps / stats(t[n])["median"]
        notes.append(
            f"{n} process(es): {throughput / n:.0f} samples/s per process, speedup {speedup:.2f}, "
            f"efficiency {speedup / n:.2f} ({info['threads']} torch thread(s) each"
            f"{'' if cuda or n <= cores else f'; {n} processes on {cores} cores: oversubscribed'})"
        )
    return {
        "figures": figures,
        "notes": notes,
        "ok": True,
        "params": {
            "processes": counts,
            "steps_per_epoch": steps,
            "rounds": MIN_ROUNDS,
            "overrides": overrides,
            "device": info["device"],
            "cores": cores,
            "ratio": "speedup = median over rounds of t_1 / t_N (the same definition in the table and the notes)",
        },
    }
