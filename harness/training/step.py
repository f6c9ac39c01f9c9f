"""One training epoch, readable top to bottom: embed, base loss, regularizer terms, step.

:class:`Step` is what a step uses, built once per run from its parts (``Step.of(parts, plan)``), so that
``train_one_epoch(step, loader, epoch, step0)`` reads as the step itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.distributed.parallel import DataParallel
from harness.errors import NonFiniteLossError
from harness.runtime import autocast_for


def check_finite(total: torch.Tensor, terms: dict, epoch: int, step: int) -> None:
    if not math.isfinite(total.item()):  # one read, no extra op: this check runs every step
        shown = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch} step {step} ({shown}); lower optimizer.lr or the regularizer weight, "
            f"or enable trainer.grad_clip"
        )


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
    reads: frozenset = field(init=False)  # the Batch fields the regularizers read (a data-parallel run gathers them)

    def __post_init__(self):
        self.reads = frozenset().union(*(getattr(r, "reads", ()) for r in self.regularizers.values()))

    @property
    def model(self) -> nn.Module:
        return self.parallel.model

    @property
    def params(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    @classmethod
    def of(cls, parts, plan) -> Step:
        return cls(parts.parallel, parts.loss, parts.regularizers, parts.optimizer, parts.scaler, parts.device,
                   parts.amp, parts.augment, plan.grad_clip, plan.grad_clip_mode, int(parts.cfg.seed))  # fmt: skip


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

        with autocast_for(step.device, step.amp):  # embeddings come out in float32 (losses, coding rates run in it)
            batch = step.parallel.batch(inputs, labels, step.reads, step=step0 + i, epoch=epoch)

        terms = {"base": step.loss(batch.embeddings, batch.labels)}
        for name, reg in step.regularizers.items():
            for term, value in reg(batch, base_loss=step.loss, model=model).items():
                terms[f"{name}.{term}" if term != name else name] = value
        first, *rest = terms.values()
        total = sum(rest, first)  # no `0 +` op in the graph when the base loss is the only term
        check_finite(total, terms, epoch, i)

        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(total).backward()
        step.scaler.unscale_(step.optimizer)
        step.parallel.sync_gradients()  # the proxies' and flows' gradients, averaged over the processes
        if step.grad_clip:
            clip_gradients(step.params, float(step.grad_clip), step.grad_clip_mode)
        step.scaler.step(step.optimizer)
        step.scaler.update()

        for k, v in {**terms, "loss": total}.items():  # summed once per epoch, not one op per step
            sums.setdefault(k, []).append(v.detach())
        steps += 1
        if progress is not None:
            progress.update(1)
    out = {f"train/{k}": float(torch.stack(v).sum()) / max(steps, 1) for k, v in sums.items()}
    out["train/steps"] = steps
    out["time/train_s"] = time.perf_counter() - t0
    return out


def clip_gradients(params, limit: float, mode: str = "norm") -> None:
    if mode == "value":
        torch.nn.utils.clip_grad_value_(params, limit)
    else:
        torch.nn.utils.clip_grad_norm_(params, limit)
