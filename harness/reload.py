"""Reload a finished run to embed new data with its own test-time preprocessing.

    from harness import load_run
    run = load_run("results/runs/digits/multi_similarity__none__mlp__1a2b3c4d__seed0")
    emb = run.embed(inputs)           # tensor or numpy batch of raw inputs -> (n, embed_dim) numpy
    emb = run.embed_dataset(dataset)  # any split of the run's dataset type

The model is rebuilt from the run's saved ``config.yaml`` and the weights of the selected epoch
(``checkpoints/best.pt``, loaded with ``weights_only=True``). Image inputs given as PIL images or paths
go through the dataset's evaluation transform (resize, crop, normalisation) exactly as in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from harness import checkpoint as ckpt
from harness.errors import ConfigError


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: object
    model: torch.nn.Module
    transform: object = None
    device: torch.device = torch.device("cpu")

    @torch.no_grad()
    def embed(self, inputs, batch_size: int = 256) -> np.ndarray:
        """Embed a batch: a tensor/array of preprocessed inputs, or a list of PIL images / image paths."""
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack([self._prepare(x) for x in inputs])
        elif isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs)
        inputs = inputs.float()
        self.model.eval()
        out = [self.model(inputs[i : i + batch_size].to(self.device)).cpu() for i in range(0, len(inputs), batch_size)]
        return torch.cat(out).numpy()

    def embed_dataset(self, dataset, batch_size: int = 256) -> np.ndarray:
        from harness.evaluation.embed import embed_dataset

        return embed_dataset(self.model, dataset, self.device, batch_size)[0]

    def _prepare(self, x):
        if isinstance(x, (str, Path)):
            from PIL import Image

            x = Image.open(x).convert("RGB")
        if self.transform is not None and not torch.is_tensor(x):
            return self.transform(x)
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def load_run(run_dir, device: str = "cpu") -> LoadedRun:
    from harness.build import build_model

    run_dir = Path(run_dir)
    best = run_dir / "checkpoints" / ckpt.BEST
    if not best.exists():
        raise ConfigError(f"{best} does not exist; load_run needs a run that has evaluated at least one epoch")
    cfg = OmegaConf.load(run_dir / "config.yaml")  # saved complete: no ??? left, no data needed to build
    model = build_model(cfg)
    state = ckpt.load(best)["modules"]["model"]
    model.load_state_dict(state)
    dev = torch.device(device)
    return LoadedRun(run_dir, cfg, model.to(dev).eval(), eval_transform_for(cfg), dev)


def eval_transform_for(cfg):
    """The dataset's test-time transform, rebuilt from the saved config (None for vector datasets)."""
    node = cfg.dataset.get("transform")
    if node is None:
        return None
    from harness.data.transforms import build_eval_transform

    return build_eval_transform(**OmegaConf.to_container(node, resolve=True))
