"""Run directories, per-epoch JSON lines and the final record, all written atomically.

A run directory is a deterministic function of the run's config and seed (never the clock):

    results/runs/<dataset>/<loss>__<regularizers>__<backbone>__<hash8>__seed<N>/
        config.yaml       the resolved config (secrets redacted)
        overrides.txt     the command-line overrides of this run
        epochs.jsonl      one JSON object per epoch: losses by term, learning rates, val metrics, times
        checkpoints/      last.pt (resume) and best.pt (the selected epoch)
        record.json       the final record (status finished / failed / pruned), written last
        error.txt         the traceback of a failed run
        run.log           the run's log

Re-running a config whose record says ``finished`` returns that record and trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Config keys that do not change a run's numbers: they never enter its directory name.
NON_SEMANTIC_KEYS = ("paths", "dataset.root", "published", "trainer.progress", "trainer.rerun", "trainer.num_workers",
                     "trainer.num_threads", "hydra")
RECORD = "record.json"
EPOCHS = "epochs.jsonl"
from harness.redact import redact  # noqa: E402,F401  (the one redaction module; re-exported)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


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


def read_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def append_epoch(run_dir: Path, row: dict) -> None:
    with open(Path(run_dir) / EPOCHS, "a") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")
        f.flush()


def read_epochs(run_dir: Path) -> list:
    path = Path(run_dir) / EPOCHS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_epochs(run_dir: Path, last_epoch: int) -> None:
    """Drop epoch lines after ``last_epoch`` (a resumed run rewrites them exactly)."""
    rows = [r for r in read_epochs(run_dir) if r["epoch"] <= last_epoch]
    atomic_write_text(Path(run_dir) / EPOCHS, "".join(json.dumps(r) + "\n" for r in rows))


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v if not isinstance(v, (list, tuple)) else json.dumps(v)
    return out
