"""One training epoch, readable top to bottom: embed, base loss, regularizer terms, step."""

from __future__ import annotations

import math
import time

import torch

from harness.distributed import World
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


def train_one_epoch(
    model,
    base_loss,
    regularizers: dict,
    optimizer,
    loader,
    *,
    epoch: int,
    device: torch.device,
    amp: str = "off",
    scaler=None,
    grad_clip: float | None = None,
    grad_clip_mode: str = "norm",
    step0: int = 0,
    progress=None,
    parallel: DataParallel | None = None,
    augment=None,
    seed: int = 0,
) -> dict:
    """Train for one pass over ``loader``; return the mean of each loss term and the epoch's timings.
    ``grad_clip`` clips every trained parameter's gradient before the step: their total norm (``norm``) or each
    element to [-grad_clip, grad_clip] (``value``, torch's clip_grad_value_).

    ``parallel`` (a data-parallel run): the loader yields this process's share of each batch; the losses see the
    global batch (harness.distributed). Without it, one process: the same step.

    ``augment(inputs, seed=, epoch=, step=, rank=)`` transforms each (local) batch on the device first: a pure
    function of seed, epoch, step and rank, so resume stays exact."""
    parallel = parallel or DataParallel(model, (), World())
    model = parallel.model
    model.train()
    base_loss.train()
    for reg in regularizers.values():
        reg.train()
    reads = frozenset().union(*(getattr(r, "reads", ()) for r in regularizers.values()))  # Batch fields to gather
    sums, steps, t0 = {}, 0, time.perf_counter()
    for step, (inputs, labels) in enumerate(loader):
        inputs = inputs.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if augment is not None:
            with torch.no_grad():
                inputs = augment(inputs, seed=seed, epoch=epoch, step=step)

        with autocast_for(device, amp):  # embeddings come out in float32 (losses and coding rates run in it)
            batch = parallel.batch(inputs, labels, reads, step=step0 + step, epoch=epoch)

        terms = {"base": base_loss(batch.embeddings, batch.labels)}
        for name, reg in regularizers.items():
            for term, value in reg(batch, base_loss=base_loss, model=model).items():
                terms[f"{name}.{term}" if term != name else name] = value
        first, *rest = terms.values()
        total = sum(rest, first)  # no `0 +` op in the graph when the base loss is the only term
        check_finite(total, terms, epoch, step)

        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
        else:
            total.backward()
        parallel.sync_gradients()  # the proxies' and flows' gradients, averaged over the processes
        if grad_clip:
            clip_gradients([p for g in optimizer.param_groups for p in g["params"]], float(grad_clip), grad_clip_mode)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

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
