"""Threads from the job (harness/runtime/threads.py): SLURM CPUs per task, else a cgroup quota, else the affinity mask,
shared by the processes the job started on the node; one thread for the MLP; recorded in every record."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny
from PIL import Image

import harness
from harness.runtime.threads import applied, cgroup_cpus, job_cpus, thread_plan


@pytest.mark.parametrize(
    "kwargs, threads, source",
    [
        ({"env": {}, "affinity": 2}, 2, "affinity mask of 2 CPUs / 1 process"),
        ({"env": {"SLURM_CPUS_PER_TASK": "1"}, "affinity": 2}, 1, "SLURM_CPUS_PER_TASK=1 / 1 process"),
        ({"env": {}, "affinity": 64, "quota": 8.0}, 8, "cgroup CPU quota 8 / 1 process"),
        ({"env": {}, "affinity": 4, "quota": 8.0}, 4, "affinity mask of 4 CPUs / 1 process"),
        ({"env": {}, "affinity": 64, "quota": 2.5}, 3, "cgroup CPU quota 2.5 / 1 process"),
        # one SLURM task of 8 CPUs that starts 2 ranks itself (run.py trainer.devices=2, torchrun): 4 each
        ({"env": {"SLURM_CPUS_PER_TASK": "8"}, "processes_per_node": 2, "launch_source": "torchrun"}, 4, None),
        # SLURM started each rank as a task of its own: its CPUs per task are its own
        ({"env": {"SLURM_CPUS_PER_TASK": "8"}, "processes_per_node": 4, "launch_source": "slurm"}, 8, None),
        # no CPUs per task: the job's cgroup is shared by the node's 4 tasks
        ({"env": {}, "quota": 16.0, "affinity": 64, "processes_per_node": 4, "launch_source": "slurm"}, 4, None),
        ({"env": {}, "affinity": 2, "processes_per_node": 8}, 1, None),  # never 0
        ({"env": {"OMP_NUM_THREADS": "3"}, "affinity": 64}, 3, "OMP_NUM_THREADS=3"),
        ({"env": {"OMP_NUM_THREADS": "3"}, "num_threads": 5}, 5, "trainer.num_threads=5"),
        ({"env": {}, "affinity": 64, "backbone_target": "harness.models.MLP"}, 1, "small model (MLP): one thread"),
    ],
)
def test_the_thread_count_comes_from_the_job(kwargs, threads, source):
    plan = thread_plan(**{"quota": None, "affinity": 2, **kwargs})  # quota None: none (not this host's)
    assert plan.threads == threads
    if source:
        assert plan.source == source


def test_cgroup_quotas_v2_and_v1_the_tightest_along_the_path(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "job" / "cpu.max").write_text("400000 100000\n")
    (v2 / "job" / "step" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "cg2").write_text("0::/job/step\n")
    assert cgroup_cpus(v2, tmp_path / "cg2") == 4.0
    v1 = tmp_path / "v1" / "cpu,cpuacct" / "slurm"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cg1").write_text("5:cpu,cpuacct:/slurm\n4:memory:/slurm\n")
    assert cgroup_cpus(tmp_path / "v1", tmp_path / "cg1") == 1.5
    (tmp_path / "cg0").write_text("0::/\n")
    assert cgroup_cpus(tmp_path / "empty", tmp_path / "cg0") is None
    assert job_cpus({}, quota=1.5, affinity=8) == (2, "cgroup CPU quota 1.5")


def test_applied_sets_torch_faiss_and_blas_and_restores_them():
    from threadpoolctl import threadpool_info

    from harness.evaluation.retrieval import faiss

    before = (torch.get_num_threads(), faiss.omp_get_max_threads())
    with applied(thread_plan(num_threads=1)):
        assert torch.get_num_threads() == faiss.omp_get_max_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == before


def write_tree(root, classes=6, per_class=4):
    rng = np.random.default_rng(0)
    for c in range(classes):
        for k in range(per_class):
            (root / f"class{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / f"class{c}" / f"{k}.jpg")
    return root


def test_slurm_cpus_per_task_1_on_this_machine_gives_1_thread_in_the_record(tmp_path, monkeypatch):
    """A conv net on an image tree (not the one-thread MLP), no OMP_NUM_THREADS: SLURM_CPUS_PER_TASK=1 decides."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    before = torch.get_num_threads()
    cfg = tiny(
        [
            "dataset=image_folder",
            f"dataset.root={write_tree(tmp_path / 'tree')}",
            "dataset.transform.size=16",
            "dataset.transform.resize=16",
            "dataset.test_fraction=0.34",
            "dataset.val_fraction=0.5",
            "backbone=small_cnn",
            "backbone.width=4",
            "head.embed_dim=8",
            "sampler.m=2",
            "sampler.batch_size=4",
            "sampler.batches_per_epoch=1",
            "eval.nmi=false",
            "eval.utilization=false",
            "eval.pictures=false",
        ],
        tmp_path / "results",
    )
    record = harness.run(cfg)
    assert record["status"] == "finished"
    assert record["threads/torch"] == record["threads/faiss"] == 1
    assert record["threads/source"] == "SLURM_CPUS_PER_TASK=1 / 1 process"
    assert "1 threads" in record["device"]
    assert torch.get_num_threads() == before  # the process's setting is left as it was
