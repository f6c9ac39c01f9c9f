"""What the soft-label (mixed) losses share: pair weights from soft positivity, and a stable weighted log-sum-exp.

For anchors a and examples m with soft positivity y(a, m) in [0, 1], a pair counts as positive with weight
y and as negative with weight 1 - y; pairs outside ``mask`` (e.g. an anchor with itself) weigh nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_weights(y: torch.Tensor, mask: torch.Tensor | None = None) -> tuple:
    """(positive weights y, negative weights 1 - y), both 0 outside ``mask`` (default: every pair)."""
    keep = torch.ones_like(y, dtype=torch.bool) if mask is None else mask
    return torch.where(keep, y, 0.0), torch.where(keep, 1 - y, 0.0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, k) cosine similarities of the rows of ``a`` (n, d) and ``b`` (k, d)."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def log1p_weighted_sum_exp(z: torch.Tensor, w: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """log(1 + sum_j w_j exp(z_j)) along ``dim``, stably; entries with w_j = 0 drop out (no NaN gradient)."""
    logits = torch.where(w > 0, z + torch.log(w.clamp_min(torch.finfo(w.dtype).tiny)), float("-inf"))
    zero = torch.zeros_like(logits.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([logits, zero], dim=dim), dim=dim)


class SoftLabelLoss(nn.Module):
    """Base of the mixed losses: ``forward(anchors (n, d), examples (k, d), y (n, k), mask (n, k) bool)``, where
    ``mask`` keeps the anchor-example pairs that exist (default: all); subclasses score the weighted pairs."""

    def forward(
        self, anchors: torch.Tensor, examples: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.pair_loss(anchors, examples, *soft_weights(y, mask))

    def pair_loss(self, anchors, examples, w_pos: torch.Tensor, w_neg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
