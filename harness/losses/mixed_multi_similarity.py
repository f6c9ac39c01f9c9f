"""The multi-similarity loss with soft labels: the mixed loss of Metrix for a multi-similarity base loss.

Venkataramanan et al., "It Takes Two to Tango: Mixup for Deep Metric Learning", ICLR 2022, generic form
of the loss of Wang, Han, Huang, Dong, Scott, "Multi-Similarity Loss with General Pair Weighting for
Deep Metric Learning", CVPR 2019. For each anchor a, over examples m with positivity y(a, m) in [0, 1]
and cosine similarity s(a, m):

    l(a) = 1/alpha log(1 + sum_m y(a, m)       exp(-alpha (s(a, m) - base)))
         + 1/beta  log(1 + sum_m (1 - y(a, m)) exp( beta  (s(a, m) - base)))
    L = mean over all anchors of l(a)

(``base`` is the paper's lambda, renamed as in pytorch-metric-learning). With y in {0, 1} and the mask
removing the pairs (a, a), L is exactly pytorch-metric-learning's ``MultiSimilarityLoss`` without a
miner (tested). The weights enter as ``log y`` inside a log-sum-exp, so a zero weight drops the term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MixedMultiSimilarity(nn.Module):
    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5):
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)

    def forward(self, anchors: torch.Tensor, examples: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``anchors`` (n, d), ``examples`` (k, d), ``y`` (n, k) soft positivity; ``mask`` (n, k) bool
        keeps the anchor-example pairs that exist (default: all)."""
        s = F.normalize(anchors, dim=1) @ F.normalize(examples, dim=1).T
        keep = torch.ones_like(y, dtype=torch.bool) if mask is None else mask
        pos = log1p_weighted_sum_exp(-self.alpha * (s - self.base), torch.where(keep, y, 0.0)) / self.alpha
        neg = log1p_weighted_sum_exp(self.beta * (s - self.base), torch.where(keep, 1 - y, 0.0)) / self.beta
        return (pos + neg).mean()


def log1p_weighted_sum_exp(z: torch.Tensor, w: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """log(1 + sum_j w_j exp(z_j)) along ``dim``, stably; entries with w_j = 0 drop out (no NaN gradient)."""
    logits = torch.where(w > 0, z + torch.log(w.clamp_min(torch.finfo(w.dtype).tiny)), float("-inf"))
    zero = torch.zeros_like(logits.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([logits, zero], dim=dim), dim=dim)
