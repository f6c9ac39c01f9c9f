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

from harness.losses.soft_labels import SoftLabelLoss, cosine, log1p_weighted_sum_exp


class MixedMultiSimilarity(SoftLabelLoss):
    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5):
        super().__init__()
        self.alpha, self.beta, self.base = float(alpha), float(beta), float(base)

    def pair_loss(self, anchors, examples, w_pos, w_neg) -> torch.Tensor:
        s = cosine(anchors, examples)
        pos = log1p_weighted_sum_exp(-self.alpha * (s - self.base), w_pos) / self.alpha
        neg = log1p_weighted_sum_exp(self.beta * (s - self.base), w_neg) / self.beta
        return (pos + neg).mean()
