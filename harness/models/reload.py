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

from harness.errors import ConfigError
from harness.rundir import checkpoint as ckpt
from harness.rundir.guard import safe_backbone, safe_head, safe_transform_kwargs


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
    """Rebuild a run's model from its saved config and ``best.pt``. Nothing named in the directory is executed:
    only the harness's own backbones and timm models are built, from plain values (harness.rundir.guard)."""
    from harness.training.build import build_model

    run_dir = Path(run_dir)
    best = run_dir / "checkpoints" / ckpt.BEST
    if not best.exists():
        raise ConfigError(f"{best} does not exist; load_run needs a run that has evaluated at least one epoch")
    cfg = read_config(run_dir / "config.yaml")  # saved complete: no ??? left, no data needed to build
    safe = OmegaConf.create({"backbone": safe_backbone(cfg.get("backbone")), "head": safe_head(cfg.get("head"))})
    dataset = cfg.get("dataset")
    transform = safe_transform_kwargs(dataset.get("transform") if dataset is not None else None)
    model = build_model(safe)
    try:
        state = ckpt.load(best)["modules"]["model"]
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign checkpoint: one line naming it
        raise ConfigError(
            f"{best} does not hold this run's model ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:160]}); re-run the run with trainer.rerun=true"
        ) from None
    dev = torch.device(device)
    return LoadedRun(run_dir, cfg, model.to(dev).eval(), eval_transform(transform), dev)


def read_config(path: Path):
    try:
        cfg = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist; give load_run a run directory (results/runs/<dataset>/<run>)"
        ) from None
    except Exception as err:  # noqa: BLE001 - YAML errors differ
        raise ConfigError(
            f"{path} is not a readable config ({type(err).__name__}); the run cannot be rebuilt"
        ) from None
    if not OmegaConf.is_dict(cfg):
        raise ConfigError(f"{path} is not a config mapping; the run cannot be rebuilt")
    return cfg


def eval_transform(kwargs: dict | None):
    """The dataset's test-time transform from checked plain values (None for vector datasets)."""
    if kwargs is None:
        return None
    from harness.data.transforms import build_eval_transform

    return build_eval_transform(**kwargs)
