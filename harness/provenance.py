"""Where a run came from: the code (git commit, uncommitted changes), package versions, host, device, and the
command-line overrides. Recorded in every record; none of it changes a run's identity."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

# record key -> distribution names to try, in order (faiss comes as a CPU or a GPU build)
PACKAGES = {
    "torch": ("torch",),
    "pytorch_metric_learning": ("pytorch-metric-learning",),
    "faiss": ("faiss-cpu", "faiss-gpu-cu12"),
    "timm": ("timm",),
    "hydra": ("hydra-core",),
    "omegaconf": ("omegaconf",),
    "optuna": ("optuna",),
    "numpy": ("numpy",),
    "FrEIA": ("FrEIA",),
}


def provenance(device: torch.device) -> dict:
    """The record's provenance keys: ``git/*``, ``versions/*``, ``host``, ``device``."""
    return {
        **git_state(),
        **{f"versions/{k}": v for k, v in package_versions().items()},
        "host": socket.gethostname(),
        "device": device_name(device),
    }


def task_overrides() -> list:
    """The command-line overrides of this Hydra job ([] outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def git_state() -> dict:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"git/commit": None, "git/dirty": None}
    if commit.returncode != 0:
        return {"git/commit": None, "git/dirty": None}
    return {"git/commit": commit.stdout.strip(), "git/dirty": bool(dirty.stdout.strip())}


def package_versions() -> dict:
    return {key: next((v for v in map(_version, dists) if v), None) for key, dists in PACKAGES.items()}


def _version(dist: str):
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def device_name(device: torch.device | None) -> str | None:
    if device is None:  # the run failed before its parts were built
        return None
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
