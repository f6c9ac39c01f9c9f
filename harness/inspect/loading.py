"""What the pictures are drawn from: a finished run's test split, embedded by the trained network (the
selected epoch, ``checkpoints/best.pt`` via :func:`harness.load_run`) and by the untrained network (the same
architecture, seeded as the run seeded it: the network the run evaluated at epoch 0)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from harness import records
from harness.errors import ConfigError


@dataclass
class Embedded:
    """Embeddings of the test split: queries, and the gallery they are searched in (None: the queries)."""

    query: np.ndarray
    gallery: np.ndarray | None = None


@dataclass
class Inspection:
    run_dir: Path
    record: dict
    config: object                 # the run's saved config (OmegaConf)
    query: object                  # the test queries (a Dataset with .labels)
    gallery: object | None         # the test gallery (In-Shop), else None
    class_names: dict = field(default_factory=dict)
    trained: Embedded | None = None
    untrained: Embedded | None = None

    @property
    def query_labels(self) -> np.ndarray:
        return np.asarray(self.query.labels)

    @property
    def gallery_labels(self) -> np.ndarray:
        return np.asarray((self.gallery if self.gallery is not None else self.query).labels)

    def class_name(self, label: int) -> str:
        return str(self.class_names.get(int(label), int(label)))


def load_inspection(run_dir, device: str = "cpu", untrained: bool = True) -> Inspection:
    """Rebuild the run's data and both networks, and embed the test split with each."""
    from harness.reload import load_run
    from harness.task import build_model, instantiate, seed_everything

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); pass results/runs/<dataset>/<run>")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    seed_everything(int(cfg.seed))  # the order of the run itself: seed, data, then the network's initialisation
    data = instantiate(cfg.dataset, _convert_="all")
    init_model = build_model(cfg) if untrained else None
    run = load_run(run_dir, device=device)
    out = Inspection(run_dir, records.read_record(run_dir) or {}, cfg, data.test.query, data.test.gallery,
                     dict(data.class_names or {}))
    out.trained = embed(run.model, out, run.device, int(cfg.eval.batch_size))
    if init_model is not None:
        out.untrained = embed(init_model.to(run.device), out, run.device, int(cfg.eval.batch_size))
    return out


def embed(model, inspection: Inspection, device, batch_size: int) -> Embedded:
    from harness.training import embed_dataset

    model.eval()
    q = embed_dataset(model, inspection.query, torch.device(device), batch_size)[0]
    g = embed_dataset(model, inspection.gallery, torch.device(device), batch_size)[0] \
        if inspection.gallery is not None else None
    return Embedded(q, g)
