"""The training step's view of N processes: embed the local shard, gather the global batch, sync gradients.

``DataParallel`` wraps the run's model (BatchNorm made global, the forward in DDP for bucketed gradient
all-reduces that overlap the backward pass) and the replicated parameters of the loss and the regularizers.
With one process it is a plain pass-through: the same calls, the same numbers as before.

    batch = dp.batch(inputs, labels, reads, step=s, epoch=e)   local forward, then the global Batch
    ...   loss on batch.embeddings / batch.labels, regularizers(batch, model=dp.model), backward
    dp.sync_gradients()                                         average the replicated parameters' gradients
    dp.check_in_sync(epoch)                                     parameters, buffers and RNG equal on every rank

DDP takes the gradients of the parameters that require them when it is built; ``refresh()`` rebuilds it when
that set changes (``trainer.freeze_backbone_epochs``).
"""

from __future__ import annotations

from inspect import signature

import torch
from torch import nn

from harness.distributed.collectives import (
    average_gradients,
    fingerprint,
    gather_rows,
    gather_with_grad,
    ranks_disagree,
    row_counts,
    shard,
)
from harness.distributed.sync_batchnorm import sync_batchnorm
from harness.distributed.world import World
from harness.errors import HarnessError
from harness.models.batch import Batch


class ReplicasDiverged(HarnessError):
    """The ranks' copies of the model or their random streams differ: the run would silently change method."""


class Forward(nn.Module):
    """``x -> (features, embeddings)``: the one forward DDP wraps (it hooks ``forward`` only)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        features = self.model.features(x)
        return features, self.model.embed(features)


class DataParallel:
    def __init__(self, model: nn.Module, replicated, world: World, bucket_cap_mb: float = 25.0):
        self.world = world
        self.model = sync_batchnorm(model, world)
        self.replicated = [p for p in replicated]
        self.bucket_cap_mb = bucket_cap_mb
        self._trainable = None
        self.forward = Forward(self.model)
        self.refresh()
        if world.distributed:  # the same start everywhere (seeded alike already; this makes it a fact)
            for p in [*self.model.parameters(), *self.model.buffers(), *self.replicated]:
                torch.distributed.broadcast(p.data, src=0)

    def refresh(self) -> None:
        """(Re)build DDP over the parameters that require a gradient now."""
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if not self.world.distributed or trainable == self._trainable:
            return
        self._trainable = trainable
        device_ids = [self.world.device.index] if self.world.device.type == "cuda" else None
        # BatchNorm statistics are global already (SyncBatchNorm): no buffer broadcast at every forward
        ddp = nn.parallel.DistributedDataParallel
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in signature(ddp).parameters
            else {"broadcast_buffers": False}
        )
        self.forward = ddp(
            Forward(self.model), device_ids=device_ids, bucket_cap_mb=self.bucket_cap_mb, **no_buffer_sync
        )

    def batch(
        self, inputs: torch.Tensor, labels: torch.Tensor, reads=frozenset(), step: int = 0, epoch: int = 0
    ) -> Batch:
        """The step's Batch: this rank's forward, gathered into the global batch (1-process order)."""
        features, embeddings = self.forward(inputs)
        embeddings = embeddings.float()  # losses and coding rates run in float32 even under AMP
        world = self.world
        if not world.distributed:
            return Batch(inputs, labels, features, embeddings, step=step, epoch=epoch)
        counts = row_counts(len(labels), world, world.group)
        return Batch(
            inputs=gather_rows(inputs, world, counts) if "inputs" in reads else inputs,
            labels=gather_rows(labels, world, counts),
            features=gather_with_grad(features, world, counts) if "features" in reads else features,
            embeddings=gather_with_grad(embeddings, world, counts),
            step=step,
            epoch=epoch,
            share=lambda n: shard(n, world.rank, world.world_size),
            gather=lambda t: gather_with_grad(t, world),
        )

    def sync_gradients(self) -> None:
        average_gradients(self.replicated, self.world)

    def check_in_sync(self, epoch: int) -> None:
        """Raise when the ranks' replicas or random streams differ (cheap: one digest per rank per epoch)."""
        if not self.world.distributed:
            return
        state = [*self.model.parameters(), *self.model.buffers(), *self.replicated, torch.get_rng_state()]
        apart = ranks_disagree(fingerprint(*state), self.world)
        if apart:
            raise ReplicasDiverged(
                f"after epoch {epoch} the model, proxies or random stream of rank(s) {apart} differ from rank 0's; "
                f"per-rank randomness (dropout on uneven shards, a regularizer drawing a different number of random "
                f"values per rank) breaks data parallelism: make sampler.batch_size a multiple of the process count"
            )
