"""A run's identity: what changes its numbers, its digest, its human name and its directory.

A run directory is a deterministic function of the run's config, its data and its seed (never the clock):

    results/runs/<dataset>/<loss>__<regularizers>__<backbone>__<hash8>__seed<N>/

The digest (``sha1``, version :data:`VERSION`) covers the resolved config except

* the keys of :data:`NON_SEMANTIC_KEYS`, which do not change a run's numbers (paths, progress bars, the thread
  count, published numbers, the ``rerun`` switch, trackers, pictures);
* a key of :data:`NEUTRAL_DEFAULTS` while it holds its default: a knob added to the harness leaves every finished
  run's identity as it was (a run that sets it to another value is another run);
* the values the data decides (:data:`DATA_FACTS`: ``num_classes``, ``in_features``, ... are ``???`` in the files
  and filled in by ``build``): the data fingerprint covers them, and so the digest computed before ``build`` (which
  the planner needs, and which names the directory) equals the one computed from the saved, completed config;

* the paths of the files whose content enters by the data fingerprint (``dataset.root``, an absolute
  ``dataset.csv``, a local ``backbone.weights``: ``harness.rundir.fingerprint.content_keys``);

plus the data itself, a fingerprint of the content of every file the dataset reads, wherever it lives, or of its
in-memory arrays (harness.rundir.fingerprint), and the number of processes of a data-parallel run (the 1-process
objective with its float sums in another order: 4 devices x 1 node = 2 x 2). So the same command on another image
tree (or on other pixels under the same names) is another run, and the same tree staged elsewhere is the same run.

``<run dir>/identity.json`` keeps the version, the full digest, the data fingerprint, the name's keys and the
semantic config (to say what differs when a directory holds another run). A directory written by an earlier
identity version is not silently retrained under another name: ``python -m harness.rundir migrate RESULTS``
renames it once (harness.rundir.migrate), and until then a run beside it is refused in one line naming that command.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config import instantiate
from harness.redact import redact
from harness.rundir import fingerprint

VERSION = 2
FILE = "identity.json"

# dataset.root: the path is not the data; the data's fingerprint enters instead
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
)
# Knobs added after identity version 2, with the default that leaves a run as it was: absent or at this value, the
# key is not hashed. Add every new config key here, with its default.
NEUTRAL_DEFAULTS: dict = {
    "trainer.float32_matmul_precision": "auto",  # TF32 on CUDA (issue 26); CPU runs compute as before
    "trainer.decode_on_device": False,  # JPEGs decoded on the GPU: another decoder, crops from another generator
}
# Values the data decides (build fills them in): hashed as "???" wherever they stand, but for head.embed_dim, which is
# the user's choice (embedding_size / embed_dim elsewhere are copies of it); build refuses a set value that disagrees.
DATA_FACTS = ("num_classes", "embedding_size", "embed_dim", "in_features", "in_chans")
USER_SET_FACTS = ("head.embed_dim",)


def container_of(cfg) -> dict:
    """A config (DictConfig, or the plain data of a saved config.yaml) as resolved plain data."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return json.loads(json.dumps(cfg, default=str))


def world_size(container: dict) -> int:
    trainer = container.get("trainer") or {}
    return int(trainer.get("devices", 1) or 1) * int(trainer.get("nodes", 1) or 1)


def semantic_config(cfg) -> dict:
    """The resolved config without what does not change a run's numbers, the seed, neutral defaults and data facts."""
    container = redact(container_of(cfg))
    for dotted in (*NON_SEMANTIC_KEYS, "seed", *fingerprint.content_keys(container)):  # content enters, not paths
        pop(container, dotted)
    for dotted, default in NEUTRAL_DEFAULTS.items():
        if lookup(container, dotted, default) == default:
            pop(container, dotted)
    mask_facts(container, "")
    return container


def mask_facts(node, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key in DATA_FACTS and here not in USER_SET_FACTS and not isinstance(value, (dict, list)):
                node[key] = "???"
            else:
                mask_facts(value, here)
    elif isinstance(node, list):
        for value in node:
            mask_facts(value, where)


def lookup(container: dict, dotted: str, default=None):
    node = container
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def pop(container: dict, dotted: str) -> None:
    *parents, key = dotted.split(".")
    node = container
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(key, None)


def digest(cfg, data: str) -> str:
    """The run's full identity: sha1 of the version, the semantic config, the data fingerprint (and N processes)."""
    blob = {"identity": VERSION, "config": semantic_config(cfg), "data": data}
    n = world_size(container_of(cfg))
    if n > 1:
        blob["world_size"] = n
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------- the data
def data_fingerprint(cfg, trust_manifest: bool = False) -> str:
    """The fingerprint of the run's data and of a local weights file, by content (harness.rundir.fingerprint),
    cached per dataset config within one scope (:func:`forget_data`). ``trust_manifest``: a planner's shortcut, a
    dataset's checksum manifest instead of its bytes (never inside a run)."""
    container = container_of(cfg)
    dataset = container.get("dataset") or {}
    weights = lookup(container, "backbone.weights")
    dataset_json = json.dumps(dataset, sort_keys=True, default=str)
    return _fingerprint(dataset_json, str(weights) if weights else "", trust_manifest)


@functools.lru_cache(maxsize=32)
def _fingerprint(dataset_json: str, weights: str, trust_manifest: bool) -> str:
    dataset = json.loads(dataset_json)

    def build():
        return instantiate(OmegaConf.create(dataset), _convert_="all")

    return fingerprint.data_fingerprint(
        dataset, build if dataset else None, weights or None, trust_manifest=trust_manifest
    )


def forget_data() -> None:
    """Fingerprints are cached for the scope of one run (or one sweep's planning); start a new scope."""
    _fingerprint.cache_clear()


def data_available(cfg: DictConfig) -> bool:
    """Whether every dataset root of ``cfg`` exists here (a login node may not see the compute nodes' data)."""
    dataset = container_of(cfg).get("dataset") or {}
    return all(Path(root).exists() for _, root in fingerprint.find_roots(dataset))


# ----------------------------------------------------------------------------------------------- the name
def group_choice(cfg, group: str) -> str:
    """Human name of a config group's choice (the ``name`` key of its file, else its target's class)."""
    node = (container_of(cfg) if OmegaConf.is_config(cfg) else cfg).get(group)
    if group == "regularizer":
        return "+".join(sorted(node.keys())) if node else "none"
    if not isinstance(node, dict):
        return "none"
    if node.get("name"):
        return str(node["name"])
    if node.get("model_name"):  # timm.create_model
        return str(node["model_name"])
    target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    return target.removeprefix("load_").lower()


def keys_of(cfg, full_digest: str, data: str) -> dict:
    """The identity keys every record carries and the tables group by; ``config_hash`` is the directory's hash."""
    container = container_of(cfg)
    return {
        "dataset": group_choice(container, "dataset"),
        "backbone": group_choice(container, "backbone"),
        "loss": group_choice(container, "loss"),
        "regularizer": group_choice(container, "regularizer"),
        "seed": int(container["seed"]),
        "config_hash": full_digest[:8],
        "data_fingerprint": data,
    }


def dir_name(keys: dict) -> str:
    return "__".join([keys["loss"], keys["regularizer"], keys["backbone"], keys["config_hash"], f"seed{keys['seed']}"])


def parse_dir_name(path: Path) -> dict:
    """The keys a directory's name holds (``<dataset>/<loss>__<regs>__<backbone>__<hash>__seed<N>``), for a directory
    whose identity.json is missing or from before version 2: the one parser of the name, beside its writer."""
    path = Path(path)
    parts = path.name.split("__")
    keys = {"dataset": path.parent.name}
    if len(parts) == 5 and parts[4].startswith("seed") and parts[4][4:].isdigit():
        keys.update(
            loss=parts[0], regularizer=parts[1], backbone=parts[2], config_hash=parts[3], seed=int(parts[4][4:])
        )
    return keys


def same_prefix(keys: dict) -> str:
    """The directory name with any hash: runs of one method and seed under other configs or identity versions."""
    return f"{keys['loss']}__{keys['regularizer']}__{keys['backbone']}__*__seed{keys['seed']}"
