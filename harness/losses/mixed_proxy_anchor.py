"""The Proxy Anchor loss with soft labels: the mixed loss of Metrix for a Proxy Anchor base loss.

Venkataramanan et al., "It Takes Two to Tango: Mixup for Deep Metric Learning", ICLR 2022, generic form
of the loss of Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020. The proxies
p are the anchors; examples m have positivity y_p(m) in [0, 1] and cosine similarity s(m, p):

    L = 1/|P+| sum_{p in P+} log(1 + sum_m y_p(m)       exp(-alpha (s(m, p) - margin)))
      + 1/|P|  sum_{p in P}  log(1 + sum_m (1 - y_p(m)) exp( alpha (s(m, p) + margin)))

P+ = the proxies with positive mass (sum_m y_p(m) > 0), P = all proxies. With y the one-hot labels this
is exactly pytorch-metric-learning's ``ProxyAnchorLoss`` (tested).
"""

from __future__ import annotations

import torch

from harness.losses.soft_labels import SoftLabelLoss, cosine, log1p_weighted_sum_exp


class MixedProxyAnchor(SoftLabelLoss):
    def __init__(self, margin: float = 0.1, alpha: float = 32.0):
        super().__init__()
        self.margin, self.alpha = float(margin), float(alpha)

    def pair_loss(self, proxies, examples, w_pos, w_neg) -> torch.Tensor:
        """``proxies`` (P, d) are the anchors."""
        s = cosine(proxies, examples)
        pos = log1p_weighted_sum_exp(-self.alpha * (s - self.margin), w_pos)
        neg = log1p_weighted_sum_exp(self.alpha * (s + self.margin), w_neg)
        with_pos = w_pos.sum(dim=1) > 0
        return torch.where(with_pos, pos, 0.0).sum() / with_pos.sum().clamp_min(1) + neg.mean()  # no boolean index
