"""Image preprocessing (torchvision), built from a dataset config's ``transform`` node.

    train: RandomResizedCrop(size, scale) + horizontal flip -> float tensor -> normalise
    eval:  Resize(resize) (shorter side) + CenterCrop(size)  -> float tensor -> normalise

Both builders take the same keyword arguments, so one config node describes a dataset's preprocessing
and a reloaded run rebuilds its evaluation transform from the saved config alone
(``build_eval_transform(**cfg.dataset.transform)``). ``normalize`` is ``imagenet``, ``none``, a timm
model name (its pretrained mean/std: ViT-S/16 uses 0.5, ResNet-50 and DeiT-S the ImageNet values) or
``{mean: [...], std: [...]}``.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

from harness.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ToMode:
    """Convert a PIL image to ``mode`` (RGB, L), optionally inverting it (Omniglot's black strokes -> 1).

    A class rather than a lambda so that transforms pickle into DataLoader worker processes.
    """

    def __init__(self, mode: str = "RGB", invert: bool = False):
        self.mode, self.invert = mode, invert

    def __call__(self, img: Image.Image) -> Image.Image:
        img = img.convert(self.mode) if img.mode != self.mode else img
        return ImageOps.invert(img) if self.invert else img

    def __repr__(self) -> str:
        return f"ToMode(mode={self.mode!r}, invert={self.invert})"


def normalization(normalize, channels: int) -> tuple | None:
    """(mean, std) per channel for a ``normalize`` spec, or None for no normalisation."""
    if normalize in (None, "none", False):
        return None
    if isinstance(normalize, dict):
        if set(normalize) != {"mean", "std"}:
            raise ConfigError(f"dataset.transform.normalize={normalize} needs exactly the keys mean and std")
        mean, std = tuple(normalize["mean"]), tuple(normalize["std"])
    elif normalize == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = model_normalization(str(normalize))
    if len(mean) != channels:  # e.g. ImageNet statistics for a grayscale image: their average
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    return mean, std


def model_normalization(model_name: str) -> tuple:
    """The mean/std a timm model's pretrained weights expect (read from timm's registry, no download)."""
    # lazy: heavy (timm, ~2 s), only for a timm model's normalisation
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # noqa: BLE001 - timm raises different errors across versions
        cfg = None
    if cfg is None:
        raise ConfigError(
            f"dataset.transform.normalize={model_name!r} is neither imagenet, none nor a timm model "
            f"with a pretrained config; set dataset.transform.normalize=imagenet"
        )
    return tuple(cfg.mean), tuple(cfg.std)


def _finish(size_ops: list, normalize, mode: str, invert: bool) -> v2.Compose:
    channels = 1 if mode in ("L", "1") else 3
    ops = [ToMode("L" if mode == "1" else mode, invert), *size_ops, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    stats = normalization(normalize, channels)
    if stats is not None:
        ops.append(v2.Normalize(mean=list(stats[0]), std=list(stats[1])))
    return v2.Compose(ops)


def build_train_transform(
    size: int = 224,
    resize: int = 256,
    scale=(0.08, 1.0),
    flip: bool = True,
    normalize="imagenet",
    mode: str = "RGB",
    invert: bool = False,
) -> v2.Compose:
    """Training augmentation: a random resized crop to ``size`` (area fraction in ``scale``) and a flip."""
    check_sizes(size, resize)
    ops = [v2.RandomResizedCrop(int(size), scale=tuple(scale), antialias=True)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    return _finish(ops, normalize, mode, invert)


def build_eval_transform(
    size: int = 224,
    resize: int = 256,
    scale=(0.08, 1.0),
    flip: bool = True,
    normalize="imagenet",
    mode: str = "RGB",
    invert: bool = False,
) -> v2.Compose:
    """Test-time preprocessing: resize the shorter side to ``resize``, centre-crop ``size``.

    ``scale`` and ``flip`` are training-only; they are accepted so both builders read the same node.
    """
    check_sizes(size, resize)
    return _finish([v2.Resize(int(resize), antialias=True), v2.CenterCrop(int(size))], normalize, mode, invert)


def check_sizes(size, resize) -> None:
    if int(size) < 1 or int(resize) < int(size):
        raise ConfigError(
            f"dataset.transform.size={size} and resize={resize}: need 1 <= size <= resize (e.g. size=224 resize=256)"
        )
