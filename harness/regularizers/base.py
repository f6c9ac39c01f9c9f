"""The contract every regularizer implements (AntiCo, NIR, Metrix, ...).

A regularizer is a config-free ``nn.Module``. Each training step calls it once with everything it may
need, passed explicitly:

    terms = regularizer(batch, base_loss=loss, model=model)   # -> {"antico": t, "align": t2}

``batch`` holds the step's inputs, labels, backbone features and embeddings (the graph is live, so
gradients flow back through them). ``base_loss`` is the run's :class:`~harness.losses.MetricLoss`
(read its ``proxies`` / ``proxy_labels``). ``model`` is the :class:`~harness.models.EmbeddingModel`
(Metrix re-embeds mixed inputs or features with it). The returned terms are already weighted; the
objective is the base loss plus their sum, and the run logs every term by name.

Two optional hooks:
* ``check_compatible(base_loss)`` raises :class:`~harness.errors.ConfigError` at start-up for a pair
  that cannot work (e.g. NIR with a pair-based loss), naming what would work;
* ``param_groups()`` returns optimizer groups ``{"name", "params", "lr_mult"}`` for the module's own
  parameters (proxies, flows), each with its own learning-rate multiplier, and ``"weight_decay"`` when the
  module's ``weight_decay`` is set (None: the optimizer's own value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Batch:
    inputs: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor      # backbone output before pooling (model.features(inputs))
    embeddings: torch.Tensor    # model.embed(features)
    step: int = 0               # global training step (for schedules and seeded randomness)
    epoch: int = 0


class Regularizer(nn.Module):
    """Base class: subclasses implement ``forward(batch, base_loss, model) -> dict[str, Tensor]``."""

    lr_mult: float = 1.0
    weight_decay: float | None = None

    def check_compatible(self, base_loss) -> None:  # noqa: D401 - hook
        return None

    def param_groups(self) -> list:
        params = [p for p in self.parameters() if p.requires_grad]
        name = type(self).__name__.lower()
        return [with_weight_decay({"name": name, "params": params, "lr_mult": self.lr_mult}, self.weight_decay)] if params else []

    def forward(self, batch: Batch, base_loss: nn.Module, model: nn.Module) -> dict:
        raise NotImplementedError


def with_weight_decay(group: dict, weight_decay: float | None) -> dict:
    """An optimizer group with its own weight decay, when one is set (None: the optimizer's)."""
    if weight_decay is not None:
        if weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0")
        group["weight_decay"] = float(weight_decay)
    return group
