"""Where a run came from: the code (git commit, uncommitted changes), the versions of the libraries it imported,
the threads and GPU settings it ran with, host, device, and the command-line overrides. Recorded in every record;
none of it changes a run's identity.

Versions are read from the modules the process imported (``torch.__version__``), not from the installed
packages' metadata: a module object keeps the version it was loaded with, so an environment changed under a running
job (a ``pip install`` in the shared venv) cannot be recorded instead of the code that ran. A library the run never
imported touched none of its numbers; its installed version is recorded. The raw strings are kept
(``2.14.1+cu130``); the tables normalise local build labels.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig

from harness.runtime import runtime_settings
from harness.runtime.threads import applied_threads

# record key -> (module, distribution names for a module without __version__, in order; faiss: CPU or GPU build)
PACKAGES = {
    "torch": ("torch", ("torch",)),
    "pytorch_metric_learning": ("pytorch_metric_learning", ("pytorch-metric-learning",)),
    "faiss": ("faiss", ("faiss-cpu", "faiss-gpu-cu12")),
    "timm": ("timm", ("timm",)),
    "hydra": ("hydra", ("hydra-core",)),
    "omegaconf": ("omegaconf", ("omegaconf",)),
    "optuna": ("optuna", ("optuna",)),
    "numpy": ("numpy", ("numpy",)),
    "FrEIA": ("FrEIA", ("FrEIA",)),
}


def provenance(device: torch.device) -> dict:
    """The record's provenance keys: ``git/*``, ``versions/*``, ``threads/*``, ``runtime/*``, ``host``, ``device``."""
    return {
        **git_state(),
        **{f"versions/{k}": v for k, v in imported_versions().items()},
        **applied_threads(),
        **runtime_settings(device),
        "host": socket.gethostname(),
        "device": device_name(device),
    }


def task_overrides() -> list:
    """The command-line overrides of this Hydra job ([] outside Hydra)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def git_state() -> dict:
    root = Path(__file__).resolve().parents[2]
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


def imported_versions() -> dict:
    """Each library's version as this process imported it (the installed one for a library it never imported)."""
    return {key: module_version(module, dists) for key, (module, dists) in PACKAGES.items()}


def package_versions() -> dict:
    """The same keys, for tools that report on the machine (the benchmarks)."""
    return imported_versions()


def module_version(module: str, dists: tuple):
    loaded = sys.modules.get(module)
    found = getattr(loaded, "__version__", None) if loaded is not None else None
    return str(found) if found else next((v for v in map(_installed, dists) if v), None)


def _installed(dist: str):
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
