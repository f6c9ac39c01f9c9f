"""Collectives of a data-parallel run: gathers that keep the gradient exact, and the small agreements.

The exactness argument (README, "Data parallelism"). Every rank embeds its shard of the global batch, gathers
the shards in rank order (so every rank holds the global batch, in the 1-process order) and computes the whole
objective L_r on it: base loss, miner, every regularizer. Then

* ``gather_with_grad`` is differentiable as the adjoint of all-gather: its backward all-reduces (sums) the
  gradient of the gathered tensor over the ranks and keeps this rank's rows, i.e. this rank's shard receives
  sum_r dL_r/d(shard);
* every parameter's gradient is then averaged over the ranks: the network's by DDP, the replicated ones that the
  loss and regularizers own (proxies, flows) by ``average_gradients``.

For a parameter used both through the shards (the network) and directly by every rank (proxies, a flow, the
network re-embedding Metrix's mixtures), the averaged gradient is (1/N) sum_s [dL_s/dtheta|direct
+ sum_r dL_r/de_s de_s/dtheta] = d/dtheta (1/N) sum_r L_r, and every L_r is the 1-process loss L of the same
global batch: the gradient of the 1-process run, whatever mix of sharded and replicated computation a loss uses.
(pytorch-metric-learning's DistributedLossWrapper instead keeps only the local gradient and multiplies the loss
by N: right for the network under DDP's mean, N times too large for parameters the loss itself owns.)
"""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import torch
import torch.distributed as dist

from harness.distributed.world import World


def shard(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` rows: the first ``n % world_size`` ranks get one row more."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def _comm_device(world: World) -> torch.device:
    return world.device if world.backend == "nccl" else torch.device("cpu")


def row_counts(n: int, world: World, group=None) -> list:
    """Every rank's row count (one small all-gather)."""
    if not world.distributed:
        return [n]
    mine = torch.tensor([n], dtype=torch.int64, device=_comm_device(world))
    out = [torch.zeros_like(mine) for _ in range(world.world_size)]
    dist.all_gather(out, mine, group=group)
    return [int(t) for t in out]


def _gather(x: torch.Tensor, world: World, counts: list, group) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order (rows padded to the largest count for the transport)."""
    device = x.device
    x = x.to(_comm_device(world)).contiguous()
    most = max(counts)
    if x.shape[0] < most:
        x = torch.cat([x, x.new_zeros((most - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in counts]
    dist.all_gather(parts, x, group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(device)


def gather_rows(x: torch.Tensor, world: World, counts: list | None = None) -> torch.Tensor:
    """All ranks' rows in rank order, without gradient (labels, inputs, evaluation embeddings)."""
    if not world.distributed:
        return x
    counts = counts or row_counts(x.shape[0], world, world.group)
    return _gather(x.detach(), world, counts, world.group)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, world, counts):
        ctx.world, ctx.rows = world, shard_of(counts, world.rank)
        return _gather(x, world, counts, world.group)

    @staticmethod
    def backward(ctx, grad):
        world = ctx.world
        summed = grad.to(_comm_device(world)).contiguous().clone()
        dist.all_reduce(summed, group=world.group)  # sum_r dL_r / d(gathered)
        return summed[ctx.rows].to(grad.device), None, None


def shard_of(counts: list, rank: int) -> slice:
    start = sum(counts[:rank])
    return slice(start, start + counts[rank])


def gather_with_grad(x: torch.Tensor, world: World, counts: list | None = None) -> torch.Tensor:
    """All ranks' rows in rank order; the gradient reaching this rank's rows is summed over every rank's loss."""
    if not world.distributed:
        return x
    counts = counts or row_counts(x.shape[0], world, world.group)
    return _GatherWithGrad.apply(x, world, counts)


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks; its adjoint is the same sum of the incoming gradients (CPU SyncBatchNorm's statistics)."""

    @staticmethod
    def forward(ctx, x, world):
        ctx.world = world
        out = x.to(_comm_device(world)).contiguous().clone()
        dist.all_reduce(out, group=world.group)
        return out.to(x.device)

    @staticmethod
    def backward(ctx, grad):
        out = grad.to(_comm_device(ctx.world)).contiguous().clone()
        dist.all_reduce(out, group=ctx.world.group)
        return out.to(grad.device), None


def all_reduce_with_grad(x: torch.Tensor, world: World) -> torch.Tensor:
    return _AllReduceWithGrad.apply(x, world) if world.distributed else x


def gather_array(a: np.ndarray, world: World) -> np.ndarray:
    """A numpy array's rows from every rank, in rank order (evaluation: each rank embeds its shard of a split)."""
    if not world.distributed:
        return a
    return gather_rows(torch.from_numpy(np.ascontiguousarray(a)), world).numpy()


def average_gradients(params, world: World) -> None:
    """Average the gradients of replicated parameters (proxies, flows) over the ranks, in one all-reduce.

    Every rank must hold a gradient for the same parameters (they run the same graph); a parameter without one
    (``None``, e.g. not used this step) is left without one, as in the 1-process run.
    """
    if not world.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads).to(_comm_device(world))
    dist.all_reduce(flat)
    flat /= world.world_size
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def barrier(world: World) -> None:
    """Wait until every rank is here (one tiny all-reduce: the same code path for gloo and NCCL)."""
    if world.distributed:
        dist.all_reduce(torch.zeros(1, device=_comm_device(world)))


def broadcast_object(obj, world: World, src: int = 0):
    """Rank ``src``'s picklable value on every rank (metrics, the selected epoch, a decision to stop)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device(world))
    return box[0]


def on_main(compute, world: World):
    """``compute()`` on rank 0 alone; every rank returns its value, or raises the error it raised (so that a
    decision rank 0 takes, or fails to take, is every rank's)."""
    if not world.distributed:
        return compute()
    outcome = (None, None)
    if world.is_main:
        try:
            outcome = (compute(), None)
        except Exception as exc:  # noqa: BLE001 - sent to every rank, raised there and here
            outcome = (None, exc)
    value, error = broadcast_object(outcome, world)
    if error is not None:
        raise error
    return value


def all_gather_object(obj, world: World) -> list:
    if not world.distributed:
        return [obj]
    out = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def fingerprint(*tensors) -> str:
    """A short digest of tensors' bytes (parameters, RNG states): equal on every rank when replicas agree."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(
            t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            if isinstance(t, torch.Tensor)
            else pickle.dumps(t)
        )
    return h.hexdigest()[:16]


def ranks_disagree(value: str, world: World) -> list:
    """The ranks whose ``value`` differs from rank 0's (empty when all agree)."""
    values = all_gather_object(value, world)
    return [r for r, v in enumerate(values) if v != values[0]]
