"""What the ranks of tests/test_distributed.py run (through tests/dist_ranks.py), and the 1-process references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from torch import nn

from harness.distributed import (
    World,
    average_gradients,
    broadcast_object,
    gather_array,
    gather_rows,
    gather_with_grad,
    ranks_disagree,
    shard,
    sync_batchnorm,
)
from harness.regularizers.coding_rate import coding_rate


# ----------------------------------------------------------------------------------------------- a small objective
def toy_data(n: int = 24, classes: int = 6):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=g)
    y = torch.arange(classes).repeat_interleave(n // classes)
    return x, y


def toy_parts(classes: int = 6):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
    proxy = losses.ProxyAnchorLoss(num_classes=classes, embedding_size=8)
    return model, proxy


def toy_objective(world: World, model, raw_model, proxy, x_local, y_local):
    """Base loss with a miner, a proxy loss (replicated proxies), a coding rate, and the network re-applied to mixed
    inputs (Metrix's input level, sharded), all on the gathered global batch. Returns the loss value."""
    emb_local = F.normalize(model(x_local), dim=1)
    emb = gather_with_grad(emb_local, world)
    y = gather_rows(y_local, world)
    x = gather_rows(x_local, world)
    ms, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner(epsilon=0.3)
    loss = ms(emb, y, miner(emb, y)) + proxy(emb, y) - 0.1 * coding_rate(emb)
    mixed = 0.6 * x[:4] + 0.4 * x[-4:]  # each rank embeds its share of the mixtures (BatchNorm sees all 4)
    mixed_emb = gather_with_grad(raw_model(mixed[shard(len(mixed), world.rank, world.world_size)]), world)
    loss = loss + 0.3 * F.normalize(mixed_emb, dim=1).sum(dim=1).pow(2).mean()
    return loss


def toy_reference(dtype: str, steps: int = 3) -> dict:
    """The 1-process run: full batch, plain BatchNorm, plain SGD."""
    torch.set_default_dtype(getattr(torch, dtype))
    x, y = toy_data()
    model, proxy = toy_parts()
    return toy_train(World(), model, model, proxy, x, y, steps)


def toy_train(world, model, raw_model, proxy, x, y, steps):
    opt = torch.optim.SGD([*raw_model.parameters(), *proxy.parameters()], lr=0.5)
    out = {"loss": [], "grads": None}
    for step in range(steps):
        opt.zero_grad()
        loss = toy_objective(world, model, raw_model, proxy, x, y)
        loss.backward()
        average_gradients(list(proxy.parameters()), world)
        if step == 0:
            out["grads"] = [p.grad.clone() for p in [*raw_model.parameters(), *proxy.parameters()]]
        opt.step()
        out["loss"].append(loss.item())
    out["params"] = [p.detach().clone() for p in [*raw_model.parameters(), *proxy.parameters()]]
    out["buffers"] = [b.clone() for b in raw_model.buffers()]
    return out


# ----------------------------------------------------------------------------------------------- what the ranks run
def primitives(world: World, out: Path, dtype: str) -> None:
    torch.set_default_dtype(getattr(torch, dtype))
    x, y = toy_data()
    rows = slice(world.rank * len(y) // world.world_size, (world.rank + 1) * len(y) // world.world_size)
    model, proxy = toy_parts()
    raw = sync_batchnorm(model, world)
    ddp = nn.parallel.DistributedDataParallel(raw)
    result = toy_train(world, ddp, raw, proxy, x[rows], y[rows], steps=3)

    uneven = np.full((world.rank + 2, 3), world.rank, dtype=np.float32)  # 2 rows on rank 0, 3 on rank 1
    result["gathered"] = torch.from_numpy(gather_array(uneven, world))
    result["broadcast"] = broadcast_object({"epoch": 7 + world.rank}, world)
    result["disagree"] = ranks_disagree(f"value-{world.rank}", world)
    result["agree"] = ranks_disagree("same", world)
    torch.save(result, out / f"rank{world.rank}.pt")
    torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------------------------------------- whole runs
def runs(world: World, out: Path, spec: str) -> None:
    """harness.run of every config in the JSON list ``spec`` ([[results dir, overrides...], ...]) on this rank."""
    from conftest import tiny

    import harness

    for results, *overrides in json.loads(spec):
        harness.run(tiny(overrides, Path(results)))
