"""The CPU threads of a run's process (torch, faiss, BLAS), from the CPUs its job was given.

    plan = thread_plan(cfg, launch)      who decides, in this order:
        trainer.num_threads              set in the config
        OMP_NUM_THREADS                  set in the environment (torchrun sets 1 for several processes)
        a small model                    one thread: the MLP of vector data (digits) multiplies matrices too small to
                                         split; two OpenMP threads spinning against each other on a busy machine
                                         made its epochs 10-50x slower
        the job's CPUs / its processes   SLURM_CPUS_PER_TASK, else a cgroup CPU quota (containers, SLURM's cgroup
                                         without CPU binding), else the affinity mask (taskset, srun --cpu-bind),
                                         shared by the processes this job started on the node (trainer.devices)
    with applied(plan): ...              torch.set_num_threads, faiss.omp_set_num_threads, BLAS via threadpoolctl;
                                         the previous settings come back afterwards
    applied_threads() -> dict            what this process runs with now, for the record (``threads/*``)

Ranks that SLURM starts as tasks of their own (``srun``: one task per process) each get ``SLURM_CPUS_PER_TASK``
CPUs; ranks started by torchrun or by ``python run.py trainer.devices=N`` share the CPUs of the one task that
started them. None of this changes the run's identity (a thread count changes no metric: tests/test_identity.py).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from threadpoolctl import threadpool_info, threadpool_limits

ONE_THREAD_BACKBONES = ("harness.models.MLP",)  # small models: one thread is as fast, and never oversubscribes


@dataclass(frozen=True)
class ThreadPlan:
    threads: int  # per process
    source: str  # who decided, in words (recorded as threads/source)
    cpus: int | None = None  # the CPUs the job was given (None: not consulted)


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup (the tightest along its path; v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``), in CPUs; None without a quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            for folder in _ancestors(root, path):
                quotas.append(_v2_quota(folder / "cpu.max"))
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            base = next((root / name for name in (controllers, "cpu,cpuacct", "cpu") if (root / name).is_dir()), None)
            if base is not None:
                for folder in _ancestors(base, path):
                    quotas.append(_v1_quota(folder))
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def _ancestors(base: Path, path: str) -> list:
    parts = [p for p in path.strip().split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(file: Path) -> float | None:
    try:
        quota, period = file.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 else quota / period


def affinity_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_cpus(env: Mapping[str, str] | None = None, quota: float | None = None, affinity: int | None = None) -> tuple:
    """(CPUs, where the number comes from): SLURM_CPUS_PER_TASK, else the cgroup quota, else the affinity mask
    (with both of the last two, the smaller)."""
    env = os.environ if env is None else env
    slurm = env.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm), f"SLURM_CPUS_PER_TASK={slurm}"
    affinity = affinity_cpus() if affinity is None else affinity
    if quota is not None and math.ceil(quota) < affinity:
        return max(int(math.ceil(quota)), 1), f"cgroup CPU quota {quota:g}"
    return affinity, f"affinity mask of {affinity} CPUs"


def thread_plan(
    num_threads=None,
    backbone_target: str | None = None,
    processes_per_node: int = 1,
    launch_source: str = "single",
    env: Mapping[str, str] | None = None,
    quota: float | None | str = "read",
    affinity: int | None = None,
) -> ThreadPlan:
    """How many threads this process of a run uses, and why (see the module docstring). ``quota``: the cgroup's
    CPU quota (``"read"``: read this process's; None: no quota); ``affinity``: the CPUs of the affinity mask
    (None: this process's)."""
    env = os.environ if env is None else env
    if num_threads:
        return ThreadPlan(int(num_threads), f"trainer.num_threads={int(num_threads)}")
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return ThreadPlan(int(omp), f"OMP_NUM_THREADS={omp}")
    if backbone_target in ONE_THREAD_BACKBONES:
        return ThreadPlan(1, f"small model ({backbone_target.rsplit('.', 1)[-1]}): one thread")
    cpus, where = job_cpus(env, cgroup_cpus() if quota == "read" else quota, affinity)
    # SLURM's per-task CPUs belong to this process alone when SLURM started it as a task of its own
    sharing = 1 if launch_source == "slurm" and where.startswith("SLURM") else max(int(processes_per_node), 1)
    threads = max(cpus // sharing, 1)
    return ThreadPlan(threads, f"{where} / {sharing} process{'es' if sharing > 1 else ''}", cpus)


def plan_for(cfg, launch_source: str = "single") -> ThreadPlan:
    """The plan of a run's config (trainer.num_threads, the backbone, trainer.devices processes per node)."""
    trainer = cfg.trainer
    return thread_plan(
        trainer.get("num_threads"),
        str(cfg.backbone.get("_target_", "")) if cfg.get("backbone") is not None else None,
        int(trainer.get("devices", 1) or 1),
        launch_source,
    )


_APPLIED: list = []  # the plans in force, innermost last (a sweep runs its jobs one after another in a process)


@contextlib.contextmanager
def applied(plan: ThreadPlan):
    """torch, faiss and BLAS use ``plan.threads`` inside; their previous settings come back afterwards."""
    faiss = _faiss()
    before_torch = torch.get_num_threads()
    before_faiss = faiss.omp_get_max_threads() if faiss else None
    blas = threadpool_limits(limits=plan.threads, user_api="blas")
    torch.set_num_threads(plan.threads)
    if faiss:
        faiss.omp_set_num_threads(plan.threads)
    _APPLIED.append(plan)
    try:
        yield plan
    finally:
        _APPLIED.pop()
        blas.restore_original_limits()
        torch.set_num_threads(before_torch)
        if faiss:
            faiss.omp_set_num_threads(before_faiss)


def _faiss():
    try:
        # lazy: heavy (faiss, ~1 s) and maybe broken: the except below turns that into None
        from harness.evaluation.faiss_build import import_faiss

        return import_faiss()
    except Exception:  # noqa: BLE001 - faiss missing or broken: the run reports it elsewhere
        return None


def applied_threads() -> dict:
    """What this process runs with now: ``threads/torch``, ``threads/faiss``, ``threads/blas``, ``threads/source``."""
    faiss = _faiss()
    blas = [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]
    return {
        "threads/torch": torch.get_num_threads(),
        "threads/faiss": faiss.omp_get_max_threads() if faiss else None,
        "threads/blas": max(blas) if blas else None,
        "threads/source": _APPLIED[-1].source if _APPLIED else "not set by the harness",
        "threads/job_cpus": _APPLIED[-1].cpus if _APPLIED else None,
    }
