"""The process a run trains in: seeds, device, mixed precision (device); the threads the job was given (threads)."""

from harness.runtime.device import (
    AMP_MODES,
    MATMUL_PRECISIONS,
    amp_of,
    autocast_for,
    check_gpu_knobs,
    note_settings,
    pick_amp,
    pick_device,
    pick_matmul_precision,
    runtime_settings,
    seed_everything,
    seed_worker,
    torch_threads,
)

__all__ = [
    "AMP_MODES",
    "torch_threads",
    "seed_everything",
    "seed_worker",
    "pick_device",
    "pick_amp",
    "autocast_for",
    "amp_of",
    "MATMUL_PRECISIONS",
    "pick_matmul_precision",
    "check_gpu_knobs",
    "note_settings",
    "runtime_settings",
]
