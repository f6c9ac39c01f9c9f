"""A run's identity: what changes its numbers, its hash, its human name and its directory.

A run directory is a deterministic function of the run's config, its data and its seed (never the clock):

    results/runs/<dataset>/<loss>__<regularizers>__<backbone>__<hash8>__seed<N>/

The hash covers the resolved config except the keys below, which do not change a run's numbers (paths,
progress bars, the torch thread count, published numbers, the ``rerun`` switch, experiment trackers and
pictures), plus the data itself: a fingerprint of the files under the dataset's root (relative paths and
sizes) or of the in-memory arrays (harness/rundir/fingerprint.py), and of the content of a local ``backbone.weights``
file. So the same command on
another image tree is another run, and the same tree at another path (another cluster) is the same run.
``trainer.num_workers`` is part of the identity: loader processes draw the augmentations from their own
random streams, so another count gives other batches on image datasets. ``trainer.num_threads`` is not: the
losses and every retrieval metric are identical across thread counts, float64 diagnostics differ at most in
their last bits, and the count a run had is in its record's ``device`` (both audited in tests/test_identity.py).

``<run dir>/identity.json`` keeps the full digest; a directory whose stored identity differs from the run's
(a copied directory, a hash collision) is refused with one line, never resumed or reported as finished.
A data-parallel run (``trainer.devices`` x ``trainer.nodes`` = N > 1 processes) computes the 1-process objective
with its sums in another order, so it is a run of its own by N alone (4 devices x 1 node = 2 x 2).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config import world_size_of

# dataset.root: the path is not the data; the data's fingerprint enters instead (see data_fingerprint)
NON_SEMANTIC_KEYS = (
    "paths",
    "dataset.root",
    "published",
    "trainer.progress",
    "trainer.rerun",
    "trainer.num_threads",
    "trainer.prefetch_factor",  # how far loader workers read ahead: the same batches
    "dataset.on_device",  # where an in-memory split lives: the same values gathered
    "trainer.devices",
    "trainer.nodes",
    "trainer.dist_timeout_s",
    "hydra",
    "logger",
    "eval.pictures",
    "eval.picture_map",
)  # trackers and pictures: not the numbers
IDENTITY_FILE = "identity.json"


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
    return digest(cfg)[:length]


def digest(cfg: DictConfig) -> str:
    """sha1 of the semantic config and the data fingerprint: the run's full identity."""
    semantic = semantic_config(cfg)
    if world_size_of(cfg) > 1:  # the same method, but float sums in another order: a run of its own (4x1 = 2x2)
        semantic["world_size"] = world_size_of(cfg)
    blob = json.dumps({"config": semantic, "data": data_fingerprint(cfg)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def data_fingerprint(cfg: DictConfig) -> str:
    """The fingerprint of the run's data (and of a local weights file), cached per dataset config."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") is not None else {}
    weights = OmegaConf.select(cfg, "backbone.weights", default=None)
    return _fingerprint(json.dumps(dataset, sort_keys=True, default=str), str(weights) if weights else "")


@functools.lru_cache(maxsize=32)
def _fingerprint(dataset_json: str, weights: str) -> str:
    from harness.rundir.fingerprint import data_fingerprint as of_data
    from harness.rundir.fingerprint import file_digest

    dataset = json.loads(dataset_json)

    def build():
        from harness.training.build import instantiate

        return instantiate(OmegaConf.create(dataset), _convert_="all")

    out = of_data(dataset, build) if dataset else "none"
    return f"{out}+{file_digest(weights)}" if weights else out


def forget_data() -> None:
    """Fingerprints are cached for the scope of one run (or one sweep's planning); start a new scope."""
    from harness.rundir.fingerprint import tree_fingerprint

    _fingerprint.cache_clear()
    tree_fingerprint.cache_clear()


def data_available(cfg: DictConfig) -> bool:
    """Whether every dataset root of ``cfg`` exists here (a login node may not see the compute nodes' data)."""
    from harness.rundir.fingerprint import find_roots

    dataset = OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") is not None else {}
    return all(Path(root).exists() for _, root in find_roots(dataset))


def check_identity(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse a run directory that holds another identity's run; record this one's when there is none."""
    from harness.errors import ConfigError
    from harness.io import atomic_write_json

    path = Path(run_dir) / IDENTITY_FILE
    mine = {"digest": digest(cfg), "data": data_fingerprint(cfg)}
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        atomic_write_json(path, mine)
        return
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict) or stored.get("digest") != mine["digest"]:
        other = stored.get("data") if isinstance(stored, dict) else None
        why = "its data differ" if other and other != mine["data"] else "its config or data differ"
        theirs = str(stored.get("digest") if isinstance(stored, dict) else stored)[:12]
        raise ConfigError(
            f"{run_dir} holds another run ({why}: identity {theirs} "
            f"!= {mine['digest'][:12]}); it is left untouched: remove it, or set paths.results elsewhere"
        )


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
    name = "__".join(
        [
            group_choice(cfg, "loss"),
            group_choice(cfg, "regularizer"),
            group_choice(cfg, "backbone"),
            config_hash(cfg),
            f"seed{cfg.seed}",
        ]
    )
    return Path(cfg.paths.results) / "runs" / group_choice(cfg, "dataset") / name


def identity_keys(cfg: DictConfig) -> dict:
    """The record's identity keys: what the tables group runs by."""
    return {
        "dataset": group_choice(cfg, "dataset"),
        "backbone": group_choice(cfg, "backbone"),
        "loss": group_choice(cfg, "loss"),
        "regularizer": group_choice(cfg, "regularizer"),
        "seed": int(cfg.seed),
        "config_hash": config_hash(cfg),
        "data_fingerprint": data_fingerprint(cfg),
    }
