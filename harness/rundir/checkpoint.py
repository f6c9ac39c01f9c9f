"""Atomic checkpoints and exact resume.

``last.pt`` holds everything a resumed run needs to produce the same numbers as an uninterrupted one:
model, base loss (proxies), regularizers (proxies, flows), optimizer, scheduler, AMP scaler, the loop
state (epoch: the sampler's position, since batches are a pure function of seed and epoch; the selection
so far), and every RNG state (python, numpy, torch CPU and CUDA). It is written atomically
(:mod:`harness.io`), so a run killed while writing resumes from the previous checkpoint. Loading uses
``weights_only=True``: a checkpoint holds tensors and plain values, never code.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from harness.io import atomic_write

LAST = "last.pt"
BEST = "best.pt"


def atomic_save(obj, path: Path) -> None:
    """torch.save, atomically. Serialised in memory first and written by Python: a full disk is then an OSError
    (ENOSPC, one line naming the fix) instead of torch's "unexpected pos" RuntimeError from inside its writer."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: write_file(tmp, buffer.getbuffer()))


def write_file(path, data) -> None:
    with open(path, "wb") as f:
        f.write(data)


def load(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].copy()),
            "pos": np_state[2],
            "has_gauss": np_state[3],
            "cached": np_state[4],
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]), float(n["cached"]))
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def module_states(modules: dict) -> dict:
    return {name: m.state_dict() for name, m in modules.items() if m is not None}


def load_module_states(modules: dict, states: dict) -> None:
    for name, m in modules.items():
        if m is not None and name in states:
            m.load_state_dict(states[name])
