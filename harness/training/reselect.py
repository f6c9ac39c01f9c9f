"""The selected epoch's weights at the end of a run, even when ``checkpoints/best.pt`` is damaged or lost.

``last.pt`` holds the last epoch's weights, not the selected one's, so a truncated ``best.pt`` (a disk that filled
mid-write, a copy cut short) cannot be replaced from it. Instead it is set aside as ``best.pt.corrupt`` with one
line naming it, and the run trains again to the selected epoch: the same config and seed, through the same
loop (:func:`harness.training.fit.fit` with ``epochs`` = the selected epoch, in ``checkpoints/retrain/``, which
a killed retraining resumes exactly). The retrained weights are checked against the epoch log: the same
validation value at that epoch (always on a CPU, where training is deterministic); where it differs (a GPU's
nondeterministic kernels), one warning gives both values and the record keeps the retrained network's.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from harness.distributed import barrier, broadcast_object
from harness.rundir import checkpoint as ckpt
from harness.rundir import records
from harness.rundir.salvage import Corrupt, load_checkpoint_or_set_aside
from harness.training.build import build

log = logging.getLogger(__name__)
RETRAIN = "retrain"


@dataclass
class Scratch:
    """Where a retraining writes (what :func:`~harness.training.fit.fit` needs of an attempt): its own epoch log
    and checkpoints under ``checkpoints/retrain/``, rank 0 alone, no trackers."""

    path: Path
    world: object

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_epoch(self, row: dict) -> None:
        if self.world.is_main:
            records.append_epoch(self.path, row)

    def truncate_epochs(self, last_epoch: int) -> None:
        if self.world.is_main:
            records.truncate_epochs(self.path, last_epoch)


def selected_states(parts, plan, attempt, state) -> dict:
    """The module states of the selected epoch (``state.best_epoch``) from ``best.pt``, rebuilt when damaged."""
    path = attempt.checkpoints / ckpt.BEST
    world = parts.world

    def load(p):
        saved = ckpt.load(p)
        if not isinstance(saved, dict) or "modules" not in saved:
            raise Corrupt("holds no module states")
        if saved.get("epoch") != state.best_epoch:
            raise Corrupt(f"holds epoch {saved.get('epoch')}, but epoch {state.best_epoch} was selected")
        return saved

    then = f"training again to epoch {state.best_epoch}, the selected one"
    usable = load_checkpoint_or_set_aside(path, load, then) is not None if world.is_main else None
    if broadcast_object(usable, world):
        return ckpt.load(path)["modules"]
    scratch = Scratch(attempt.checkpoints / RETRAIN, world)
    retrained = retrain(parts, plan, scratch, state.best_epoch)
    check_against_log(retrained, plan, attempt.path, state)
    if world.is_main:
        os.replace(scratch.checkpoints / ckpt.BEST, path)
        shutil.rmtree(scratch.path, ignore_errors=True)
    barrier(world)
    return ckpt.load(path)["modules"]


def retrain(parts, plan, scratch: Scratch, epoch: int) -> dict:
    """Train the run's config again from its seed to ``epoch``; the selected epoch's results of that training.
    The random state of the caller is restored afterwards (the rest of the run draws what it would have)."""
    # lazy: harness.training.fit imports this module (circle)
    from harness.training.fit import fit

    rng = ckpt.rng_state()
    try:
        fresh = build(parts.cfg, parts.device, parts.world)
        return fit(fresh, replace(plan, epochs=int(epoch), progress=False), scratch).results
    finally:
        ckpt.set_rng_state(rng)


def check_against_log(results: dict, plan, run_dir: Path, state) -> None:
    """The retrained epoch's validation value against the epoch log's; a difference is one warning, and the
    record then keeps the retrained network's validation numbers (its test numbers come from that network)."""
    key = plan.selection.key
    logged = next((r.get(key) for r in records.read_epochs(run_dir) if r.get("epoch") == state.best_epoch), None)
    value = results.get(key)
    if results.get("selected_epoch") == state.best_epoch and logged is not None and math.isclose(value, logged):
        log.info("epoch %d trained again: %s %.6f, as in the epoch log", state.best_epoch, key, value)
        return
    log.warning(
        "epoch %d trained again gives %s %s where the epoch log says %s (training is not deterministic here); "
        "the record keeps the retrained network's validation and test numbers",
        state.best_epoch,
        key,
        value,
        logged,
    )
    state.best_val = {k: v for k, v in results.items() if k.startswith("val/")}
