"""Each rank's share of the global batch, drawn by the 1-process batch sampler.

``ShardedBatchSampler`` wraps any batch sampler (e.g. :class:`~harness.data.samplers.MPerClassBatchSampler`),
lets it draw the GLOBAL batch exactly as it does for one process (same seed, same epoch: the same indices,
the same classes) and yields this rank's contiguous slice of it. Gathered in rank order, the slices are that
global batch again, in its order, so the losses see what the 1-process run sees.
"""

from __future__ import annotations

from torch.utils.data import Sampler

from harness.distributed.collectives import shard


class ShardedBatchSampler(Sampler):
    def __init__(self, batch_sampler, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.batch_sampler, self.rank, self.world_size = batch_sampler, int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        for batch in self.batch_sampler:
            yield list(batch)[shard(len(batch), self.rank, self.world_size)]

    def __getattr__(self, name):  # the wrapped sampler's own attributes (batch_size, m, seed, epoch, ...)
        if name == "batch_sampler":
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)
