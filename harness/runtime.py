"""The process a run trains in: seeds, device, mixed precision."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from harness.errors import ConfigError

AMP_MODES = ("bf16", "fp16")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` intra-op torch threads (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy and python seeded from the worker's torch seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec} but no CUDA device is available; use trainer.device=auto or cpu")
    return torch.device(spec)


def pick_amp(spec, device: torch.device) -> str:
    """The mixed precision a run uses: ``off`` on CPU; on CUDA ``auto`` is bf16 where supported, else fp16."""
    if spec in (False, None, "off") or device.type != "cuda":
        return "off"
    if spec in ("auto", True):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if spec not in AMP_MODES:
        raise ConfigError(f"trainer.amp={spec} must be auto, bf16, fp16 or off")
    return spec


def autocast_for(device: torch.device, amp: str):
    """bf16 / fp16 autocast on CUDA when asked; a no-op on CPU (AMP is a GPU feature here)."""
    if device.type != "cuda" or amp in (None, "off", False):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def amp_of(t: torch.Tensor) -> str:
    """The precision a tensor was computed in under autocast: ``bf16``, ``fp16`` or ``off``."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(t.dtype, "off")
