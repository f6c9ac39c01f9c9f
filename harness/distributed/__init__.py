"""Data-parallel runs: one run on N processes (GPUs, or CPU processes with gloo), the same method as on one.

world.py        where this process sits (torchrun's or SLURM's variables), the process group, timeouts
collectives.py  gathers whose gradient keeps the 1-process objective exact; averaging replicated gradients
sampler.py      each rank's share of the global batch the 1-process sampler draws
batchnorm.py    BatchNorm over the global batch (SyncBatchNorm; a CPU version for gloo)
"""

from harness.distributed.collectives import (
    all_gather_object,
    average_gradients,
    barrier,
    broadcast_object,
    fingerprint,
    gather_array,
    gather_rows,
    gather_with_grad,
    on_main,
    ranks_disagree,
    row_counts,
    shard,
)
from harness.distributed.sampler import ShardedBatchSampler
from harness.distributed.sync_batchnorm import CpuSyncBatchNorm, sync_batchnorm
from harness.distributed.world import (
    Launch,
    RankLostError,
    World,
    close_world,
    first_host,
    init_world,
    launch_from_env,
    lost_peer,
)

__all__ = [
    "CpuSyncBatchNorm",
    "Launch",
    "RankLostError",
    "ShardedBatchSampler",
    "World",
    "all_gather_object",
    "average_gradients",
    "barrier",
    "broadcast_object",
    "close_world",
    "fingerprint",
    "first_host",
    "gather_array",
    "gather_rows",
    "gather_with_grad",
    "init_world",
    "launch_from_env",
    "lost_peer",
    "on_main",
    "ranks_disagree",
    "row_counts",
    "shard",
    "sync_batchnorm",
]
