"""One training epoch, readable top to bottom: embed, base loss, regularizer terms, step.

:class:`Step` is what a step uses, built once per run from its parts (``Step.of(parts, plan)``), so that
``train_one_epoch(step, loader, epoch, step0)`` reads as the step itself.

No host read inside the step (on a GPU the host enqueues steps ahead of the device; a read stalls that queue): the
terms are kept on the device and read once, at the end of the epoch (``epoch_means``), where the loop also learns
whether every step was finite, before it validates or writes any checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.distributed.parallel import DataParallel
from harness.errors import NonFiniteLossError
from harness.models.backbones import is_channels_last
from harness.runtime import autocast_for


def epoch_means(sums: dict, epoch: int, step0: int, hints: dict) -> dict:
    """The epoch's one read of the device: every term's mean, and whether every step's total was finite. A
    non-finite step raises :class:`NonFiniteLossError` naming the first bad step and its terms (a second read, on
    failure only); the loop reads this before anything is saved, so a non-finite state is never checkpointed.
    ``hints``: term name -> the fix its regularizer suggests when that term is the non-finite one."""
    names = list(sums)
    stacked = {k: torch.stack(v) for k, v in sums.items()}
    bad = ~torch.isfinite(stacked["loss"])
    summary = torch.stack([*(stacked[k].sum().double() for k in names), bad.sum().double(), bad.double().argmax()])
    *totals, n_bad, first = summary.tolist()  # one device-to-host copy per epoch
    if n_bad:
        first = int(first)
        values = {k: stacked[k][first].item() for k in names if k != "loss"}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        fixes = [hints[k] for k, v in values.items() if not math.isfinite(v) and k in hints]
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch} step {first} ({shown}); "
            + ("; ".join(fixes) + "; or " if fixes else "")
            + f"lower optimizer.lr or the regularizer weight, or enable trainer.grad_clip (global step "
            f"{step0 + first}, {int(n_bad)} of {len(bad)} steps of the epoch; found at its end, before any checkpoint: "
            f"none was written)"
        )
    steps = len(stacked["loss"])
    return {f"train/{k}": total / max(steps, 1) for k, total in zip(names, totals)}


@dataclass
class Step:
    """Everything one training step uses. ``parallel`` is the model across the run's processes (alone: as is): the
    loader yields this process's share of each batch and the losses see the global batch (harness.distributed).
    ``scaler`` is fp16's gradient scaler, a pass-through when ``amp`` is not fp16. ``augment(inputs, seed=, epoch=,
    step=)`` transforms each (local) batch on the device first: a pure function of its arguments, so resume stays
    exact. ``grad_clip`` clips every trained parameter's gradient: their total norm (``norm``) or each element to
    [-grad_clip, grad_clip] (``value``)."""

    parallel: DataParallel
    loss: nn.Module
    regularizers: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: str = "off"
    augment: nn.Module | None = None
    grad_clip: float | None = None
    grad_clip_mode: str = "norm"
    seed: int = 0
    channels_last: bool = False  # the model's conv weights are NHWC (trainer.channels_last): image batches follow
    reads: frozenset = field(init=False)  # the Batch fields the regularizers read (a data-parallel run gathers them)

    hints: dict = field(init=False)  # term name -> its regularizer's fix for a non-finite value (non_finite_hint)

    def __post_init__(self):
        self.reads = frozenset().union(*(getattr(r, "reads", ()) for r in self.regularizers.values()))
        self.hints = {}
        for name, reg in self.regularizers.items():
            for term, hint in getattr(reg, "non_finite_hints", {}).items():
                self.hints[f"{name}.{term}" if term != name else name] = hint

    @property
    def model(self) -> nn.Module:
        return self.parallel.model

    @property
    def params(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    @classmethod
    def of(cls, parts, plan) -> Step:
        return cls(parts.parallel, parts.loss, parts.regularizers, parts.optimizer, parts.scaler, parts.device,
                   parts.amp, parts.augment, plan.grad_clip, plan.grad_clip_mode, int(parts.cfg.seed),
                   is_channels_last(parts.model))  # fmt: skip


def train_one_epoch(step: Step, loader, epoch: int, step0: int = 0, progress=None) -> dict:
    """Train for one pass over ``loader``; return the mean of each loss term and the epoch's timings."""
    model = step.model
    for module in (model, step.loss, *step.regularizers.values()):
        module.train()
    sums, steps, t0 = {}, 0, time.perf_counter()
    for i, (inputs, labels) in enumerate(loader):
        inputs = inputs.to(step.device, non_blocking=True)
        labels = labels.to(step.device, non_blocking=True)
        if step.augment is not None:
            with torch.no_grad():
                inputs = step.augment(inputs, seed=step.seed, epoch=epoch, step=i)
        if step.channels_last and inputs.dim() == 4:  # a no-op when already NHWC
            inputs = inputs.contiguous(memory_format=torch.channels_last)

        with autocast_for(step.device, step.amp):  # embeddings come out in float32 (losses, coding rates run in it)
            batch = step.parallel.batch(inputs, labels, step.reads, step=step0 + i, epoch=epoch)

        terms = {"base": step.loss(batch.embeddings, batch.labels)}
        for name, reg in step.regularizers.items():
            for term, value in reg(batch, base_loss=step.loss, model=model).items():
                terms[f"{name}.{term}" if term != name else name] = value
        first, *rest = terms.values()
        total = sum(rest, first)  # no `0 +` op in the graph when the base loss is the only term

        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(total).backward()
        step.scaler.unscale_(step.optimizer)
        step.parallel.sync_gradients()  # the proxies' and flows' gradients, averaged over the processes
        if step.grad_clip:
            clip_gradients(step.params, float(step.grad_clip), step.grad_clip_mode)
        step.scaler.step(step.optimizer)
        step.scaler.update()

        for k, v in {**terms, "loss": total}.items():  # summed and checked once per epoch: no host read per step
            sums.setdefault(k, []).append(v.detach())
        steps += 1
        if progress is not None:
            progress.update(1)
    out = epoch_means(sums, epoch, step0, step.hints) if steps else {}
    out["train/steps"] = steps
    out["time/train_s"] = time.perf_counter() - t0
    return out


def clip_gradients(params, limit: float, mode: str = "norm") -> None:
    if mode == "value":
        torch.nn.utils.clip_grad_value_(params, limit)
    else:
        torch.nn.utils.clip_grad_norm_(params, limit)
