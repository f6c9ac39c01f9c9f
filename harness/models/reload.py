"""Reload a finished run to embed new data exactly as the run embedded its own test split.

    from harness import load_run
    run = load_run("results/runs/digits/multi_similarity__none__mlp__1a2b3c4d__seed0")
    emb = run.embed(raw)              # raw inputs -> (n, embed_dim) numpy
    emb = run.embed_dataset(dataset)  # any split of the run's dataset type (already preprocessed by its loader)

Raw inputs are what the dataset's files hold: for vector data an array of rows (digits: scikit-learn's 0-16
intensities, scaled as the loader scales them), for image data a list of image paths (decoded as the loader
decodes them: JPEG draft, crop, resize, normalisation), PIL images or H x W x C uint8 arrays. For image data a
tensor batch (N x C x H x W) is taken as already preprocessed. The loader's preprocessing is its
``eval_preprocess`` (digits, Omniglot), else the image loaders' (harness.data.images.eval_preprocess).

The model is rebuilt from the run's saved ``config.yaml``, read through the one guard
(harness.rundir.guard: nothing it names is executed unchecked), and the weights of the selected epoch
(``checkpoints/best.pt``, loaded with ``weights_only=True``); nothing else is read from disk or the network
(timm's ``pretrained`` is turned off, ``backbone.weights`` dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from harness.errors import ConfigError
from harness.evaluation.embed import embed_dataset
from harness.rundir import checkpoint as ckpt
from harness.rundir.guard import TIMM_TARGETS
from harness.rundir.run_dir import RunDir
from harness.training.build import build_model


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: object
    model: torch.nn.Module
    preprocess: object = None  # raw input -> what the network sees (see the module docstring)
    device: torch.device = torch.device("cpu")

    @torch.no_grad()
    def embed(self, inputs, batch_size: int = 256) -> np.ndarray:
        """Embed raw inputs (see the module docstring) as the run embedded its test split."""
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack([self.prepare(x) for x in inputs])
        elif getattr(self.preprocess, "batched", False):
            inputs = self.preprocess(inputs)
        elif isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs)
        inputs = inputs.float()
        self.model.eval()
        out = [self.model(inputs[i : i + batch_size].to(self.device)).cpu() for i in range(0, len(inputs), batch_size)]
        return torch.cat(out).numpy()

    def embed_dataset(self, dataset, batch_size: int = 256) -> np.ndarray:
        return embed_dataset(self.model, dataset, self.device, batch_size)[0]

    def prepare(self, x) -> torch.Tensor:
        if self.preprocess is not None:
            return torch.as_tensor(self.preprocess(x))
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)


def load_run(run_dir, device: str = "cpu") -> LoadedRun:
    """Rebuild a run's model from its guarded config and ``best.pt`` (see the module docstring)."""
    run_dir = Path(run_dir)
    best = run_dir / "checkpoints" / ckpt.BEST
    if not best.exists():
        raise ConfigError(f"{best} does not exist; load_run needs a run that has evaluated at least one epoch")
    cfg = OmegaConf.create(RunDir.at(run_dir).config())  # guarded; saved complete: no ??? left, no data needed
    if cfg.get("backbone") is None or cfg.get("head") is None:
        raise ConfigError(f"{run_dir / 'config.yaml'} has no backbone or head; the run cannot be rebuilt")
    model = build_model(OmegaConf.create({"backbone": reload_backbone(cfg.backbone), "head": cfg.head}))
    try:
        model.load_state_dict(ckpt.load(best)["modules"]["model"])
    except Exception as err:  # noqa: BLE001 - a damaged or foreign checkpoint: one line naming it
        raise ConfigError(
            f"{best} does not hold this run's model ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:160]}); re-run the run with trainer.rerun=true"
        ) from None
    dev = torch.device(device)
    return LoadedRun(run_dir, cfg, model.to(dev).eval(), preprocess_of(cfg.get("dataset")), dev)


def preprocess_of(dataset):
    """The test split's preprocessing of a (guarded) dataset node: its loader's ``eval_preprocess``, else the
    image loaders' where the node has a ``transform``; None when there is none (inputs are used as given)."""
    if dataset is None:
        return None
    # lazy: heavy (torchvision, ~1 s after torch), only for an image dataset
    from harness.data.images import eval_preprocess

    values = {k: v for k, v in OmegaConf.to_container(dataset, resolve=False).items() if not str(k).startswith("_")}
    hook = getattr(get_method(dataset._target_), "eval_preprocess", None) if dataset.get("_target_") else None
    if hook is not None:
        return hook(**values)
    return eval_preprocess(**values) if values.get("transform") is not None else None


def reload_backbone(node) -> DictConfig:
    """A guarded backbone node as ``load_run`` builds it: nothing read from disk or the network (timm's
    ``pretrained`` off, ``weights`` dropped: the trained weights come from ``checkpoints/best.pt``)."""
    data = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else dict(node)
    if data.get("_target_") in TIMM_TARGETS:
        data["pretrained"] = False
        data.pop("weights", None)
    return OmegaConf.create(data)
