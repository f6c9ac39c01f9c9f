"""4. Training-loop overhead: the harness's step against a bare PyTorch loop on the same batches.

The subject is ``harness.training.step.train_one_epoch`` fed by the run's own loader (the M-per-class batch
sampler over the in-memory digits split, built by ``harness.training.build``), regularizer off, loss terms
accumulated as in a run. The alternative is the loop every PyTorch tutorial writes: forward, the same base
loss (miner included), ``zero_grad``, ``backward``, ``step``, over the same batches already gathered into
tensors before the clock starts (so its data cost is zero: the floor). Both train their own copy of the
same initial model with the same optimizer. Goal: the harness within 5% (time ratio <= 1.05).

On CPU both run with one intra-op thread and are timed by the thread's CPU time (``time.thread_time``): the
figure is the harness's own (Python-side) overhead, and on a shared machine the wall time of two threads per
tiny MLP op mostly measures the scheduler. On a GPU both run on the GPU, timed by the wall clock.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import harness
from harness.bench.common import MIN_ROUNDS, clock_for, figure, interleave, synchronize
from harness.runtime import pick_device, torch_threads
from harness.training.build import build, build_optimizer
from harness.training.fit import Plan
from harness.training.step import Step, train_one_epoch

CONF = Path(harness.__file__).resolve().parents[1] / "conf"
DEVICE = pick_device("auto")
CPU_THREADS = 1


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


class Training:
    """Everything one training step needs, built as ``harness.run`` builds it, on the bench device."""

    def __init__(self, overrides=(), steps: int = 50, seed: int = 0):
        parts = build(compose_config([*overrides, f"sampler.batches_per_epoch={steps}", f"seed={seed}"]), DEVICE)
        self.data, self.cfg, self.model, self.loss = parts.data, parts.cfg, parts.model, parts.loss
        self.regularizers, self.optimizer = parts.regularizers, parts.optimizer
        self.sampler, self.loader = parts.sampler, parts.loader
        self.step = Step.of(parts, Plan.from_config(parts.cfg))

    def harness_epoch(self, epoch: int = 1) -> None:
        """One epoch of ``train_one_epoch`` (epoch 1 again by default: the same batches every call)."""
        self.sampler.set_epoch(epoch)
        train_one_epoch(self.step, self.loader, epoch, (epoch - 1) * len(self.sampler))
        synchronize(DEVICE)

    def batches(self, epoch: int) -> list:
        """The batches the harness's loader yields in ``epoch``, as ready tensors."""
        self.sampler.set_epoch(epoch)
        inputs, labels = self.data.train.inputs, torch.as_tensor(self.data.train.labels)
        return [(inputs[idx].to(DEVICE), labels[idx].to(DEVICE)) for idx in (torch.as_tensor(b) for b in self.sampler)]


def bare_loop(model, loss, optimizer, batches) -> None:
    model.train()
    loss.train()
    for x, y in batches:
        embeddings = model(x)
        value = loss(embeddings, y)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    synchronize(DEVICE)


def threads_for(device) -> int | None:
    return CPU_THREADS if device.type == "cpu" else None


def run(quick: bool = False, full: bool = False) -> dict:
    steps, repeats = (10, MIN_ROUNDS) if quick else (60, 15)
    ours = Training(["regularizer=none"], steps=steps)
    bare_model, bare_loss = copy.deepcopy(ours.model), copy.deepcopy(ours.loss)
    bare_opt = build_optimizer(ours.cfg.optimizer, bare_model, bare_loss, torch.nn.ModuleDict(), ours.cfg.lr_mult)
    batches = ours.batches(1)  # what the harness's loader yields in epoch 1, every round: identical work

    clock, clock_name = clock_for(threads_for(DEVICE), DEVICE)
    with torch_threads(threads_for(DEVICE)):
        t = interleave(
            {"harness": ours.harness_epoch, "bare": lambda: bare_loop(bare_model, bare_loss, bare_opt, batches)},
            repeats,
            clock=clock,
        )
    fig = figure(
        f"training step, digits MLP + {ours.cfg.loss.name} loss, batch {ours.cfg.sampler.batch_size}",
        "harness train_one_epoch + its loader",
        "bare PyTorch loop on pre-built batches",
        t["harness"],
        t["bare"],
        goal="ratio<=1.05",
        load=t.load,
    )
    fig["subject_steps_per_s"] = steps / fig["subject_s"]["median"]
    fig["alternative_steps_per_s"] = steps / fig["alternative_s"]["median"]
    return {
        "figures": [fig],
        "params": {
            "steps_per_round": steps,
            "batch_size": int(ours.cfg.sampler.batch_size),
            "loss": ours.cfg.loss.name,
            "backbone": "mlp",
            "device": str(DEVICE),
            "clock": clock_name,
            "torch_threads": threads_for(DEVICE) or torch.get_num_threads(),
        },
        "notes": [
            f"steps/s: harness {fig['subject_steps_per_s']:.0f}, bare loop {fig['alternative_steps_per_s']:.0f} "
            f"(medians over {repeats} rounds of {steps} steps; {clock_name})"
        ],
        "ok": True,
    }
