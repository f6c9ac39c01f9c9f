"""3. Regularizers (NIR, Metrix, AntiCo): extra time per training step over the base loss alone.

For every file of ``conf/regularizer/`` (except ``none``) the harness's training step
(``train_one_epoch`` with the run's loader) is timed with the regularizer and without it, on the same
batches, base loss, backbone and initial weights. The base loss is the default (multi-similarity) unless
the regularizer refuses it at start-up (NIR needs proxies): then ``proxy_anchor``. The figure is the step
time ratio; ``extra_ms_per_step`` is the absolute cost, which does not grow with the backbone except for
the Metrix levels that run the backbone again (input) or part of it (feature). CPU: one intra-op thread and
the thread's CPU time, as in the training-loop benchmark.
"""

from __future__ import annotations

import torch

from harness.bench.common import MIN_ROUNDS, clock_for, figure, interleave
from harness.bench.training_loop import CONF, DEVICE, Training, threads_for
from harness.errors import ConfigError
from harness.runtime import torch_threads

FALLBACK_LOSS = "proxy_anchor"


def regularizer_files() -> list:
    return sorted(p.stem for p in (CONF / "regularizer").glob("*.yaml") if p.stem != "none")


def build_pair(name: str, steps: int) -> tuple:
    """(with the regularizer, without it), on the first base loss the regularizer accepts."""
    for loss in ("multi_similarity", FALLBACK_LOSS):
        try:
            with_reg = Training([f"regularizer=[{name}]", f"loss={loss}"], steps=steps)
        except ConfigError:
            continue
        return with_reg, Training(["regularizer=none", f"loss={loss}"], steps=steps), loss
    raise ConfigError(f"regularizer {name} accepts neither multi_similarity nor {FALLBACK_LOSS}")


def run(quick: bool = False, full: bool = False, names=None) -> dict:
    steps, repeats = (5, MIN_ROUNDS) if quick else (20, MIN_ROUNDS)
    names = names or (regularizer_files()[:1] if quick else regularizer_files())
    figures, skipped = [], []
    clock, clock_name = clock_for(threads_for(DEVICE), DEVICE)
    for name in names:
        try:
            with_reg, base, loss = build_pair(name, steps)
        except ConfigError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        with torch_threads(threads_for(DEVICE)):
            t = interleave({"with": with_reg.harness_epoch, "base": base.harness_epoch}, repeats, clock=clock)
        fig = figure(
            f"regularizer {name} (loss={loss}), digits MLP, batch {with_reg.cfg.sampler.batch_size}",
            f"training step + {name}",
            f"training step, {loss} alone",
            t["with"],
            t["base"],
            load=t.load,
        )
        fig["extra_ms_per_step"] = 1e3 * (fig["subject_s"]["median"] - fig["alternative_s"]["median"]) / steps
        figures.append(fig)
    notes = [
        f"{f['name'].split(' (')[0]}: +{f['extra_ms_per_step']:.2f} ms per step ({f['ratio']['median']:.2f}x the step)"
        for f in figures
    ]
    missing = [n for n in ("nir", "metrix_feature") if not (CONF / "regularizer" / f"{n}.yaml").exists()]
    if missing:
        notes.append(f"not measured (no config file yet): {', '.join(missing)}")
    notes += [f"skipped {s}" for s in skipped]
    return {
        "figures": figures,
        "params": {
            "steps_per_round": steps,
            "device": str(DEVICE),
            "torch_threads": threads_for(DEVICE) or torch.get_num_threads(),
            "regularizers": names,
            "clock": clock_name,
        },
        "notes": notes,
        "ok": not skipped,
    }
