"""The contrastive loss with soft labels: the mixed loss of Metrix for a contrastive base loss.

Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos, Avrithis, "It Takes Two to Tango: Mixup for Deep
Metric Learning", ICLR 2022, written in the paper's generic form: for anchors a and examples m (mixed
or clean) with positivity y(a, m) in [0, 1] (for a mixture of x and x' with weight lambda,
y = lambda [class(x) = class(a)] + (1 - lambda) [class(x') = class(a)]),

    pos(a, m) = y(a, m)       * [d(a, m) - pos_margin]_+
    neg(a, m) = (1 - y(a, m)) * [neg_margin - d(a, m)]_+
    L = sum pos / #{pos > 0}  +  sum neg / #{neg > 0}   (``counts``: a pair occurring c times counts c times)

with d the Euclidean distance of the L2-normalised vectors. Both terms are averaged over their
non-zero entries, as pytorch-metric-learning's ``ContrastiveLoss`` (``AvgNonZeroReducer``) does: with
y in {0, 1} and the mask removing the pairs (a, a), L is exactly that loss (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.losses.soft_labels import SoftLabelLoss


class MixedContrastive(SoftLabelLoss):
    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 0.5):
        super().__init__()
        self.pos_margin, self.neg_margin = float(pos_margin), float(neg_margin)

    def forward(
        self,
        anchors: torch.Tensor,
        examples: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """As SoftLabelLoss, or with ``counts`` (n, k): how many times each anchor-example pair occurs (0: not
        at all), as if the pair were repeated in the lists being averaged (the authors' Metrix pairing)."""
        if counts is None:
            return super().forward(anchors, examples, y, mask)
        kept = counts > 0
        return self.pair_loss(anchors, examples, torch.where(kept, y, 0.0), torch.where(kept, 1 - y, 0.0), counts)

    def pair_loss(self, anchors, examples, w_pos, w_neg, counts=None) -> torch.Tensor:
        d = torch.cdist(F.normalize(anchors, dim=1), F.normalize(examples, dim=1))
        pos = w_pos * F.relu(d - self.pos_margin)
        neg = w_neg * F.relu(self.neg_margin - d)
        return average_non_zero(pos, counts) + average_non_zero(neg, counts)


def average_non_zero(losses: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
    """sum(counts * losses) / #{entries > 0, each counted ``counts`` times} (0 when none is > 0)."""
    if counts is None:
        return losses.sum() / (losses > 0).sum().clamp_min(1)
    return (counts * losses).sum() / (counts * (losses > 0)).sum().clamp_min(1)
