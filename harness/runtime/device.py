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


# ----------------------------------------------------------------------------------------------- GPU knobs
MATMUL_PRECISIONS = ("auto", "highest", "high", "medium")
_RUN_SETTINGS: dict = {}  # what the last build of this process applied (one run at a time per process)


def pick_matmul_precision(spec, device: torch.device) -> str:
    """``trainer.float32_matmul_precision``: auto is ``high`` on CUDA (TF32 matrix products: 10-bit mantissa
    inputs, float32 accumulation; the coding rate keeps full float32 regardless) and ``highest`` elsewhere."""
    spec = str(spec or "auto")
    if spec not in MATMUL_PRECISIONS:
        raise ConfigError(
            f"trainer.float32_matmul_precision={spec} must be one of {', '.join(MATMUL_PRECISIONS)} "
            f"(auto: high, i.e. TF32, on CUDA; highest elsewhere)"
        )
    if spec == "auto":
        return "high" if device.type == "cuda" else "highest"
    return spec


def check_gpu_knobs(cfg) -> None:
    """The GPU and loader knobs' values, before anything is built (one line each)."""
    t = cfg.trainer
    pick_matmul_precision(t.get("float32_matmul_precision", "auto"), torch.device("cpu"))
    prefetch = t.get("prefetch_factor", 2)
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise ConfigError(f"trainer.prefetch_factor={prefetch} must be an integer >= 1 (batches per worker), e.g. 2")
    if t.get("decode_on_device", False) not in (True, False):
        raise ConfigError(f"trainer.decode_on_device={t.decode_on_device!r} must be true or false")
    on_device = cfg.dataset.get("on_device", "auto") if cfg.get("dataset") is not None else "auto"
    if on_device not in ("auto", True, False):
        raise ConfigError(f"dataset.on_device={on_device!r} must be auto (on a GPU), true or false")


def note_settings(**settings) -> None:
    """Remember the run's applied settings for its record (``runtime/<key>``); a new build starts afresh."""
    _RUN_SETTINGS.clear()
    _RUN_SETTINGS.update(settings)


def runtime_settings(device: torch.device | None) -> dict:
    """``runtime/*`` of the record: the settings the run applied, and the process-wide ones as they are now."""
    out = {f"runtime/{k}": v for k, v in _RUN_SETTINGS.items()}
    out["runtime/float32_matmul_precision"] = torch.get_float32_matmul_precision()
    if device is not None and device.type == "cuda":
        out["runtime/cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        out["runtime/cudnn_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    return out
