"""The contrastive loss with soft labels: the mixed loss of Metrix for a contrastive base loss.

Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos, Avrithis, "It Takes Two to Tango: Mixup for Deep
Metric Learning", ICLR 2022, written in the paper's generic form: for anchors a and examples m (mixed
or clean) with positivity y(a, m) in [0, 1] (for a mixture of x and x' with weight lambda,
y = lambda [class(x) = class(a)] + (1 - lambda) [class(x') = class(a)]),

    pos(a, m) = y(a, m)       * [d(a, m) - pos_margin]_+
    neg(a, m) = (1 - y(a, m)) * [neg_margin - d(a, m)]_+
    L = sum pos / #{pos > 0}  +  sum neg / #{neg > 0}   (a pair occurring c times counts c times)

with d the Euclidean distance of the L2-normalised vectors. Both terms are averaged over their
non-zero entries, as pytorch-metric-learning's ``ContrastiveLoss`` (``AvgNonZeroReducer``) does: with
y in {0, 1} and the mask removing the pairs (a, a), L is exactly that loss (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MixedContrastive(nn.Module):
    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 0.5):
        super().__init__()
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)

    def forward(self, anchors: torch.Tensor, examples: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor | None = None, counts: torch.Tensor | None = None) -> torch.Tensor:
        """``anchors`` (n, d), ``examples`` (k, d), ``y`` (n, k) soft positivity; ``mask`` (n, k) bool keeps the
        anchor-example pairs that exist (default: all); ``counts`` (n, k) instead says how many times each
        pair occurs (0: not at all), as if the pair were repeated in the lists being averaged."""
        d = torch.cdist(F.normalize(anchors, dim=1), F.normalize(examples, dim=1))
        if counts is None:
            counts = torch.ones_like(y) if mask is None else mask.to(y.dtype)
        pos = y * F.relu(d - self.pos_margin)
        neg = (1 - y) * F.relu(self.neg_margin - d)
        return average_non_zero(pos, counts) + average_non_zero(neg, counts)


def average_non_zero(losses: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """sum(counts * losses) / #{entries > 0, each counted ``counts`` times} (0 when none is > 0)."""
    kept = counts > 0
    losses = torch.where(kept, losses, 0.0)  # no 0 * inf or 0 * nan from pairs that do not exist
    return (counts * losses).sum() / (counts * (losses > 0)).sum().clamp_min(1)
