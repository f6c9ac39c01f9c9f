"""A run's identity: which config keys change its numbers, its hash, its human name and its directory.

A run directory is a deterministic function of the run's config and seed (never the clock):

    results/runs/<dataset>/<loss>__<regularizers>__<backbone>__<hash8>__seed<N>/

The hash covers the resolved config except the keys below, which do not change a run's numbers (paths,
progress bars, thread and loader-process counts, published numbers, the ``rerun`` switch). Two commands
that would train the same numbers share a directory, so re-running a finished config is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

NON_SEMANTIC_KEYS = ("paths", "dataset.root", "published", "trainer.progress", "trainer.rerun", "trainer.num_workers",
                     "trainer.num_threads", "hydra")


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config without the keys that do not change a run's numbers (and without the seed)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for dotted in NON_SEMANTIC_KEYS + ("seed",):
        *parents, key = dotted.split(".")
        node = container
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(key, None)
    return container


def config_hash(cfg: DictConfig, length: int = 8) -> str:
    blob = json.dumps(semantic_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


def group_choice(cfg: DictConfig, group: str) -> str:
    """Human name of a config group's choice (the ``name`` key of its file, else its target's class)."""
    node = cfg.get(group)
    if group == "regularizer":
        return "+".join(sorted(node.keys())) if node else "none"
    if node is None:
        return "none"
    if "name" in node and node.name:
        return str(node.name)
    if node.get("model_name"):  # timm.create_model
        return str(node.model_name)
    target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    return target.removeprefix("load_").lower()


def run_dir_for(cfg: DictConfig) -> Path:
    name = "__".join([
        group_choice(cfg, "loss"), group_choice(cfg, "regularizer"), group_choice(cfg, "backbone"),
        config_hash(cfg), f"seed{cfg.seed}",
    ])
    return Path(cfg.paths.results) / "runs" / group_choice(cfg, "dataset") / name


def identity_keys(cfg: DictConfig) -> dict:
    """The record's identity keys: what the tables group runs by."""
    return {"dataset": group_choice(cfg, "dataset"), "backbone": group_choice(cfg, "backbone"),
            "loss": group_choice(cfg, "loss"), "regularizer": group_choice(cfg, "regularizer"),
            "seed": int(cfg.seed), "config_hash": config_hash(cfg)}
