"""The run's config: checked before anything is built, completed from the data once it is loaded.

Each rule lives here once. A failure is a :class:`~harness.errors.ConfigError`: one line naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from harness.errors import ConfigError

SELECTION_METRICS = ("map@r", "r_precision", "nmi")
SELECTION_MODES = ("max", "min")


def validate_config(cfg: DictConfig) -> None:
    """Cheap checks before anything is built."""
    if int(cfg.trainer.epochs) < 1:
        raise ConfigError(f"trainer.epochs={cfg.trainer.epochs} must be >= 1")
    if int(cfg.trainer.eval_every) < 1:
        raise ConfigError(f"trainer.eval_every={cfg.trainer.eval_every} must be >= 1")
    check_embed_dim(cfg.head.embed_dim)
    selection_of(cfg)


@dataclass(frozen=True)
class Selection:
    """What picks the epoch: a validation metric (its record key, e.g. ``val/map@r``) and max or min."""

    key: str
    mode: str

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.mode == "max" else value < best)

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"


def selection_of(cfg: DictConfig) -> Selection:
    metric = str(cfg.selection.metric)
    if metric not in SELECTION_METRICS and not metric.startswith("recall@"):
        raise ConfigError(f"selection.metric={metric} is unknown; use one of {', '.join(SELECTION_METRICS)} or recall@K")
    if metric.startswith("recall@") and int(metric[7:]) not in list(cfg.eval.k):
        raise ConfigError(f"selection.metric={metric} is not computed; add it to eval.k={list(cfg.eval.k)}")
    if metric == "nmi" and not cfg.eval.val_nmi:
        raise ConfigError("selection.metric=nmi needs eval.val_nmi=true")
    if cfg.selection.mode not in SELECTION_MODES:
        raise ConfigError(f"selection.mode={cfg.selection.mode} must be max or min")
    return Selection(key=f"val/{metric}", mode=str(cfg.selection.mode))


def check_embed_dim(embed_dim) -> int:
    if embed_dim is None or int(embed_dim) <= 0:
        raise ConfigError(f"head.embed_dim={embed_dim} must be a positive integer; set e.g. head.embed_dim=128")
    return int(embed_dim)


def complete_config(cfg: DictConfig, data) -> DictConfig:
    """Fill the ``???`` values that come from the data (number of classes, input size) in a copy of cfg."""
    facts = {"num_classes": data.num_classes, "embedding_size": int(cfg.head.embed_dim),
             "embed_dim": int(cfg.head.embed_dim)}
    shape = data.input_shape
    facts["in_features"] = int(np.prod(shape))
    facts["in_chans"] = int(shape[0]) if len(shape) == 3 else 1
    cfg = cfg.copy()

    def fill(node, path):
        for key in list(node.keys()):
            where = f"{path}.{key}" if path else str(key)
            if OmegaConf.is_missing(node, key):
                if key not in facts:
                    raise ConfigError(f"{where} is not set (???); set it on the command line, e.g. {where}=...")
                with open_dict(node):
                    node[key] = facts[key]
            elif isinstance(node[key], DictConfig):
                fill(node[key], where)

    fill(cfg, "")
    return cfg
