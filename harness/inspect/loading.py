"""What the pictures are drawn from: a finished run's test split, embedded by the trained network (the
selected epoch, ``checkpoints/best.pt`` via :func:`harness.load_run`) and by the untrained network (built by
``harness.training.build`` from the run's config and seed: the network the run evaluated at epoch 0).

:func:`load_inspection` rebuilds all of it from a run directory (``python -m harness.inspect``);
:func:`inspection_of` takes it from the run that has just finished in this process (its pictures at the end)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from harness.distributed import World
from harness.evaluation.evaluator import Embedded
from harness.models.reload import load_run
from harness.rundir.run_dir import RunDir
from harness.runtime import pick_amp
from harness.training.build import build_data_and_model, build_evaluator


@dataclass
class Inspection:
    run_dir: Path
    record: dict
    config: object  # the run's saved config (OmegaConf)
    test: object  # the test split (EvalSet: queries, and a gallery for In-Shop)
    evaluator: object  # the run's Evaluator (embeds on the chosen device)
    class_names: dict = field(default_factory=dict)
    trained: Embedded | None = None
    untrained: Embedded | None = None

    @property
    def query(self):
        return self.test.query

    @property
    def gallery(self):
        return self.test.gallery

    @property
    def query_labels(self) -> np.ndarray:
        return np.asarray(self.test.query.labels)

    @property
    def gallery_labels(self) -> np.ndarray:
        return np.asarray((self.test.gallery if self.test.gallery is not None else self.test.query).labels)

    def class_name(self, label: int) -> str:
        return str(self.class_names.get(int(label), int(label)))

    def embed(self, model) -> Embedded:
        return self.evaluator.embed(model, self.test)


def load_inspection(run_dir, device: str = "cpu", untrained: bool = True) -> Inspection:
    """Rebuild the run's data and both networks, and embed the test split with each. The saved config is read
    through the one guard (harness.rundir.guard), and only the data, the evaluator and the network are built
    from it: nothing else it names (loss, optimizer, trackers) is instantiated."""

    run_dir = Path(run_dir)
    rd = RunDir.at(run_dir)
    cfg = OmegaConf.create(rd.config())  # through the one guard
    run = load_run(run_dir, device=device)
    dev = torch.device(device)
    data, _, cfg, model = build_data_and_model(cfg, dev)  # seeded as the run was: its epoch-0 network
    out = Inspection(
        run_dir,
        rd.record() or {},
        cfg,
        data.test,
        build_evaluator(cfg, dev, pick_amp(cfg.trainer.amp, dev)),
        dict(data.class_names or {}),
    )
    out.trained = out.embed(run.model)
    out.untrained = out.embed(model) if untrained else None
    return out


def inspection_of(run_dir, parts, trained: Embedded, untrained: Embedded | None) -> Inspection:
    """The inspection of the run that has just finished here: its data, evaluator and embeddings as they are.
    Only when the run resumed (``untrained`` None) is the untrained network built and embedded again."""
    run_dir = Path(run_dir)
    evaluator = replace(parts.evaluator, world=World())  # rank 0 alone draws: embeds without its peers
    out = Inspection(
        run_dir,
        RunDir.at(run_dir).record() or {},
        parts.cfg,
        parts.data.test,
        evaluator,
        dict(parts.data.class_names or {}),
        trained,
        untrained,
    )
    if out.untrained is None:
        out.untrained = out.embed(build_data_and_model(parts.cfg, parts.device)[3])
    return out
