"""What a run is called and grouped by in the trackers, the way a lab browses them.

A run's name says its dataset, base loss, regularizers and the values its command swept, e.g.
``cub200 · proxy_anchor + antico_pair w=0.3 · seed 1`` (redacted, like everything a tracker receives); its
group is the sweep (``sweep=<file>``), else the Optuna study, else, for an inline grid
(``python run.py -m loss=a,b``), the multirun's folder (``grid <time>``): every multirun is one group.
The HParams of a run (TensorBoard's HParams tab) are its identity's named parts and every value it swept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from harness.redact import redact_text
from harness.rundir.identity import group_choice

# overrides that place a run or say how it runs, not what it computes (a key or everything under it): never part
# of a name or the HParams; and the selections a name always says anyway
NOT_A_KNOB = ("paths", "hydra", "logger", "search", "trainer.progress", "trainer.rerun", "trainer.num_workers")
NOT_A_KNOB += ("trainer.num_threads", "trainer.device")
IN_EVERY_NAME = ("dataset", "loss", "regularizer", "seed", "sweep")
SHORT = {"weight": "w"}  # the knob names a name abbreviates (the example every lab writes: w=0.3)
SWEPT_ENV = "HARNESS_SWEPT"  # set for each job by the launchers: the keys whose values differ between the jobs


@dataclass(frozen=True)
class SweepContext:
    """Where a run sits: the multirun folder's name (None: a single run) and the keys its sweep varies (None: not
    known, every override the command typed counts as chosen)."""

    multirun: str | None = None
    keys: frozenset | None = None

    @classmethod
    def current(cls) -> SweepContext:
        """From Hydra (this job of a multirun, its sweeper's ``params``) and the launchers' ``HARNESS_SWEPT``."""
        try:
            hydra = HydraConfig.get()
        except Exception:  # not under Hydra (a test, harness.run from Python): a single run
            return cls()
        if hydra.mode != RunMode.MULTIRUN:
            return cls()
        keys = {str(k).lstrip("+~") for k in (hydra.sweeper.get("params") or {})}
        keys |= {k for k in os.environ.get(SWEPT_ENV, "").split(",") if k}
        return cls(Path(str(hydra.sweep.dir)).name, frozenset(keys))


def parse_overrides(overrides) -> list[tuple[str, str]]:
    """[(key, value)] of Hydra overrides, ``+``/``~``/``++`` prefixes dropped."""
    out = []
    for item in overrides or ():
        key, sep, value = str(item).partition("=")
        if sep:
            out.append((key.lstrip("+~"), value))
    return out


def is_knob(key: str) -> bool:
    return key not in IN_EVERY_NAME and not any(key == k or key.startswith(k + ".") for k in NOT_A_KNOB)


def swept(overrides, keys: frozenset | None = None) -> dict:
    """The values this run's command chose (group selections and dotted keys) without those that only place it;
    only the swept ``keys`` when they are known (a multirun: not the overrides every job of it shares)."""
    return {k: v for k, v in parse_overrides(overrides) if is_knob(k) and (keys is None or k in keys)}


def varying_keys(job_overrides) -> list:
    """The keys whose values differ between the jobs of one launch (an inline grid's swept keys)."""
    values: dict = {}
    for overrides in job_overrides:
        for key, value in parse_overrides(overrides):
            values.setdefault(key, set()).add(value)
    counts = {k: sum(k in dict(parse_overrides(o)) for o in job_overrides) for k in values}
    return sorted(k for k, v in values.items() if len(v) > 1 or counts[k] < len(job_overrides))


def group_of(tags: dict) -> str | None:
    return tags.get("sweep") or tags.get("study") or None


def _regularizers(config: dict) -> list[str]:
    node = config.get("regularizer") or {}
    return sorted(node) if isinstance(node, dict) else []


def _choice(config: dict, group: str) -> str:
    """The name the run directory gives a group's choice (the file's ``name``, else its target's)."""
    try:
        return group_choice(OmegaConf.create({group: config.get(group)}), group)
    except Exception:  # a partial config (a test's, a tracker started by hand): what it says, else "?"
        return "?"


def _knob(key: str, value: str) -> str:
    last = key.rsplit(".", 1)[-1]
    return f"{SHORT.get(last, last)}={value}"


def run_label(config: dict, overrides, keys: frozenset | None = None) -> str:
    """``dataset · loss knobs + regularizer knobs · other knobs · seed N``, redacted; see ``swept`` for ``keys``."""
    values = swept(overrides, keys)
    dataset, loss = _choice(config, "dataset"), _choice(config, "loss")
    loss_part = " ".join([loss, *(_knob(k, v) for k, v in values.items() if k.startswith("loss."))])
    parts = [loss_part]
    for reg in _regularizers(config):
        knobs = [_knob(k, v) for k, v in values.items() if k.startswith(f"regularizer.{reg}.")]
        parts.append(" ".join([reg, *knobs]))
    others = [f"{k}={v}" for k, v in values.items() if not k.startswith(("loss.", "regularizer."))]
    seed = config.get("seed")
    name = " · ".join([str(dataset), " + ".join(parts), *([" ".join(others)] if others else []), f"seed {seed}"])
    return redact_text(name)


def hparams(config: dict, tags: dict) -> dict:
    """The knobs of a run for a tracker's HParams view: its identity's parts and every value its command swept
    (``tags["swept"]``, see ``run_tags``)."""
    values = {
        "dataset": _choice(config, "dataset"),
        "loss": _choice(config, "loss"),
        "regularizer": "+".join(_regularizers(config)) or "none",
        "backbone": _choice(config, "backbone"),
        "seed": int(config.get("seed") or 0),
        "arm": tags.get("arm", "method"),
        "group": group_of(tags) or "",
    }
    for key, value in parse_overrides(tags.get("swept", "").split()):
        values.setdefault(key, _number(value))
    return {k: (redact_text(v) if isinstance(v, str) else v) for k, v in values.items()}


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
