"""The contract every regularizer implements (AntiCo, NIR, Metrix, ...).

A regularizer is a config-free ``nn.Module``. Each training step calls it once with everything it may
need, passed explicitly:

    terms = regularizer(batch, base_loss=loss, model=model)   # -> {"antico": t, "align": t2}

``batch`` holds the step's inputs, labels, backbone features and embeddings (the graph is live, so
gradients flow back through them). In a data-parallel run they are the GLOBAL batch, gathered from every
process in the 1-process order (see harness/distributed); a regularizer that runs the network again on
rows of its own making (Metrix's mixtures) computes only ``batch.share(n)`` of them and returns
``batch.gather(result)``: with one process these are "all rows" and "as is". ``base_loss`` is the run's
:class:`~harness.losses.MetricLoss`
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

from torch import nn

from harness.models.batch import Batch

__all__ = ["Batch", "Regularizer", "with_weight_decay"]


class Regularizer(nn.Module):
    """Base class: subclasses implement ``forward(batch, base_loss, model) -> dict[str, Tensor]``."""

    lr_mult: float = 1.0
    weight_decay: float | None = None
    reads: frozenset = frozenset()  # Batch fields read besides labels and embeddings ("inputs", "features"):
    # a data-parallel run gathers only these from the other processes

    def check_compatible(self, base_loss) -> None:  # noqa: D401 - hook
        return None

    def param_groups(self) -> list:
        params = [p for p in self.parameters() if p.requires_grad]
        name = type(self).__name__.lower()
        return (
            [with_weight_decay({"name": name, "params": params, "lr_mult": self.lr_mult}, self.weight_decay)]
            if params
            else []
        )

    def forward(self, batch: Batch, base_loss: nn.Module, model: nn.Module) -> dict:
        raise NotImplementedError


def with_weight_decay(group: dict, weight_decay: float | None) -> dict:
    """An optimizer group with its own weight decay, when one is set (None: the optimizer's)."""
    if weight_decay is not None:
        if weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0")
        group["weight_decay"] = float(weight_decay)
    return group
