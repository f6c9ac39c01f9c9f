"""Train-time augmentation of whole batches on the training device, for datasets decoded into memory.

An in-memory split (Omniglot) is decoded once at the test-time resolution, so its loader cannot
augment per image. :class:`BatchAugment` augments a batch after it reaches the device, each sample
with its own random parameters, drawn by kornia's augmentation modules (Riba et al., "Kornia: an Open
Source Differentiable Computer Vision Library for PyTorch", WACV 2020):

    x -> stroke-width jitter (grey-scale dilation or erosion, kornia.morphology)
      -> elastic distortion  (kornia.augmentation.RandomElasticTransform; Simard et al., ICDAR 2003)
      -> random affine       (kornia.augmentation.RandomAffine: rotation, translation, scale, shear)

The parameters are a pure function of ``(seed, epoch, step)`` (and the rank, see :func:`augment_seed`):
they are drawn from the CPU generator re-seeded with them inside ``torch.random.fork_rng``, which restores
the global CPU generator
afterwards (CUDA generators are never touched: kornia draws on the CPU). So a resumed run sees the same
augmented batches as an uninterrupted one, and augmenting changes no other random stream of the run.
Computed in float32 and returned in the input's dtype and shape. Configured under ``dataset.augment``
(``null``: off).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from kornia import augmentation as K
from kornia.morphology import dilation, erosion
from torch import nn

from harness.errors import ConfigError


def augment_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed from (seed, epoch, step) and, in a data-parallel run, the rank (well mixed: numpy's
    SeedSequence). Rank 0 draws what a one-process run draws; each other rank augments its share of the
    global batch with its own draws (the same distribution, not the same samples as with one process)."""
    entropy = [int(seed), int(epoch), int(step)] + ([int(rank)] if rank else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchAugment(nn.Module):
    """Per-sample random affine, elastic and stroke-width augmentation of a B x C x H x W batch.

    Args:
        rotation: degrees; each sample is rotated by U(-rotation, rotation).
        shear: degrees; shears along x and y, each U(-shear, shear).
        scale: ``[lo, hi]``: isotropic zoom U(lo, hi).
        translate: fraction of the side; shifts along x and y, each U(-translate, translate) x side.
        affine_p: probability that a sample gets the affine transform.
        elastic_alpha: displacement scale of the elastic field in normalised coordinates (0: off).
        elastic_sigma: Gaussian smoothing of the field, in pixels (larger: smoother, gentler).
        elastic_p: probability that a sample gets the elastic distortion.
        stroke_p: probability that a sample's strokes are thickened or thinned (half each).
        stroke_kernel: side of the square structuring element (2: about one pixel wider or thinner).
        erode: allow thinning; false: only thickening (thin strokes at low resolution can vanish).
    """

    def __init__(
        self,
        rotation: float = 0.0,
        shear: float = 0.0,
        scale=(1.0, 1.0),
        translate: float = 0.0,
        affine_p: float = 1.0,
        elastic_alpha: float = 0.0,
        elastic_sigma: float = 4.0,
        elastic_p: float = 0.5,
        stroke_p: float = 0.0,
        stroke_kernel: int = 2,
        erode: bool = True,
    ):
        super().__init__()
        scale = tuple(float(s) for s in scale)
        for name, p in (("affine_p", affine_p), ("elastic_p", elastic_p), ("stroke_p", stroke_p)):
            if not 0.0 <= float(p) <= 1.0:
                raise ConfigError(f"dataset.augment.{name}={p} must be a probability in [0, 1]")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ConfigError(
                f"dataset.augment.scale={list(scale)} must be [lo, hi] with 0 < lo <= hi, e.g. [0.9, 1.1]"
            )
        if rotation < 0 or shear < 0 or translate < 0 or elastic_alpha < 0:
            raise ConfigError(
                "dataset.augment.rotation, shear, translate and elastic_alpha are magnitudes: use values >= 0"
            )
        if elastic_alpha > 0 and elastic_sigma <= 0:
            raise ConfigError(f"dataset.augment.elastic_sigma={elastic_sigma} must be > 0")
        if int(stroke_kernel) < 2:
            raise ConfigError(f"dataset.augment.stroke_kernel={stroke_kernel} must be >= 2")
        self.stroke_p, self.erode = float(stroke_p), bool(erode)
        self.register_buffer("kernel", torch.ones(int(stroke_kernel), int(stroke_kernel)), persistent=False)
        self.elastic = None
        if elastic_alpha > 0 and elastic_p > 0:
            side = 2 * math.ceil(3 * float(elastic_sigma)) + 1
            self.elastic = K.RandomElasticTransform(
                kernel_size=(side, side),
                sigma=(float(elastic_sigma),) * 2,
                alpha=(float(elastic_alpha),) * 2,
                p=float(elastic_p),
            )
        self.affine = None
        if (rotation or shear or translate or scale != (1.0, 1.0)) and affine_p > 0:
            self.affine = K.RandomAffine(
                degrees=float(rotation),
                translate=(float(translate),) * 2 if translate else None,
                scale=scale if scale != (1.0, 1.0) else None,
                shear=(-float(shear), float(shear)) * 2 if shear else None,
                p=float(affine_p),
                padding_mode="zeros",
            )

    def forward(self, x: torch.Tensor, seed: int, epoch: int, step: int, rank: int = 0) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"BatchAugment needs a B x C x H x W batch, got shape {tuple(x.shape)}")
        dtype, out = x.dtype, x.float()
        with torch.random.fork_rng(devices=[]):  # the CPU generator is restored on exit
            torch.random.default_generator.manual_seed(augment_seed(seed, epoch, step, rank))
            if self.stroke_p > 0:
                out = self.jitter_strokes(out)
            if self.elastic is not None:
                out = self.elastic(out)
            if self.affine is not None:
                out = self.affine(out)
        return out.to(dtype)

    def jitter_strokes(self, x: torch.Tensor) -> torch.Tensor:
        """Each sample: thicker (dilation) or thinner (erosion) with probability stroke_p/2 each, else as is."""
        u = torch.rand(len(x)).to(x.device).view(-1, 1, 1, 1)  # drawn on the CPU, like kornia's parameters
        thicker = dilation(x, self.kernel)
        if not self.erode:
            return torch.where(u < self.stroke_p, thicker, x)
        thinner = erosion(x, self.kernel)
        return torch.where(u < self.stroke_p / 2, thicker, torch.where(u < self.stroke_p, thinner, x))

    def extra_repr(self) -> str:
        return f"stroke_p={self.stroke_p}, erode={self.erode}, stroke_kernel={self.kernel.shape[0]}"
