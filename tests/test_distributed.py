"""Data parallelism on real processes (gloo on localhost): the collectives keep the 1-process objective exact and
BatchNorm sees the global batch; the sampler shards the 1-process batches; the launch variables are read.
(Whole runs, a dead rank and resume: test_data_parallel.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dist_checks import toy_reference
from dist_ranks import run_ranks

from harness.data.samplers import MPerClassBatchSampler
from harness.distributed import Launch, ShardedBatchSampler, first_host, launch_from_env, shard


# float64: the same numbers up to round-off, since the argument is exact (float32 whole runs: test_data_parallel.py)
@pytest.mark.parametrize("dtype, loss_tol, grad_tol, param_tol", [("float64", 1e-12, 1e-10, 1e-10)])
def test_two_ranks_give_the_one_process_gradients_losses_and_batchnorm_statistics(
    tmp_path, dtype, loss_tol, grad_tol, param_tol
):
    ranks = run_ranks("dist_checks:primitives", 2, tmp_path, args=[dtype])
    assert [r.returncode for r in ranks] == [0, 0], "\n".join(r.output[-2000:] for r in ranks)
    ref = toy_reference(dtype)
    torch.set_default_dtype(torch.float32)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        np.testing.assert_allclose(got["loss"], ref["loss"], rtol=loss_tol, atol=loss_tol)
        for g, r in zip(got["grads"], ref["grads"]):  # network (DDP), proxies (averaged), BatchNorm (synced)
            torch.testing.assert_close(g, r, rtol=grad_tol, atol=grad_tol * 0.1)
        for p, r in zip(got["params"] + got["buffers"], ref["params"] + ref["buffers"]):  # after 3 SGD steps
            torch.testing.assert_close(p, r, rtol=param_tol, atol=param_tol * 0.1)
        # uneven shards come back in rank order; rank 0's values reach everyone; disagreement is named
        np.testing.assert_array_equal(got["gathered"][:, 0].numpy(), [0, 0, 1, 1, 1])
        assert got["broadcast"] == {"epoch": 7} and got["disagree"] == [1] and got["agree"] == []


def test_the_sharded_sampler_splits_each_global_batch_of_the_one_process_sampler():
    labels = np.repeat(np.arange(10), 8)
    one = MPerClassBatchSampler(labels, m=4, batch_size=16, seed=5)
    one.set_epoch(2)
    shards = []
    for rank in range(3):  # 16 rows on 3 ranks: 6, 5, 5
        s = ShardedBatchSampler(MPerClassBatchSampler(labels, m=4, batch_size=16, seed=5), rank, 3)
        s.set_epoch(2)
        shards.append(list(s))
    for step, batch in enumerate(one):
        parts = [shards[r][step] for r in range(3)]
        assert [len(p) for p in parts] == [6, 5, 5] and sum(parts, []) == batch
    assert [shard(16, r, 3) for r in range(3)] == [slice(0, 6), slice(6, 11), slice(11, 16)]


def test_launch_variables_of_torchrun_slurm_and_a_single_process():
    torchrun = {
        "RANK": "3",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "GROUP_RANK": "1",
        "MASTER_ADDR": "n1",
        "MASTER_PORT": "29500",
    }
    assert launch_from_env(torchrun) == Launch(3, 8, 1, "n1", 29500, "torchrun")
    slurm = {
        "SLURM_PROCID": "5",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_STEP_NODELIST": "gpu[007-010,12],cpu1",
        "SLURM_JOB_ID": "123456",
    }
    assert launch_from_env(slurm) == Launch(5, 8, 1, "gpu007", 20000 + 123456 % 10000, "slurm")
    # inside an allocation but not in an srun step (SLURM_STEP_NUM_TASKS unset): one process, not rank 0 of 4
    assert launch_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == Launch()
    assert launch_from_env({}) == Launch()
    assert [first_host(s) for s in ("node1", "a[3-4]", "rack2-n[01,05]x,b", "")] == [
        "node1",
        "a3",
        "rack2-n01x",
        "127.0.0.1",
    ]


def test_a_slurm_job_asks_for_one_task_and_one_gpu_per_process():
    from harness.errors import ConfigError
    from harness.launch.job_shape import Shape, gpus_asked, slurm_resources

    assert slurm_resources(Shape(4, 2), gpus_per_node=4) == {"tasks_per_node": 4, "nodes": 2}
    assert slurm_resources(Shape(2), gpus_per_node=None) == {"tasks_per_node": 2, "nodes": 1}  # CPU processes
    assert [gpus_asked(None, g) for g in ("gpu:a100:4", "gpu:2", None, "")] == [4, 2, None, None]
    with pytest.raises(
        ConfigError,
        match="trainer.devices=4 processes per node need a GPU each but hydra.launcher.gres=gpu:a100:1 asks for 1",
    ):
        slurm_resources(Shape(4), gres="gpu:a100:1")
    with pytest.raises(ConfigError, match="hydra.launcher.tasks_per_node=8 but trainer.devices=2"):
        slurm_resources(Shape(2), tasks_per_node=8)
