"""The base loss of a run: a pytorch-metric-learning loss, its optional miner, and its proxies.

The loss and the miner are pytorch-metric-learning objects built from their own ``_target_`` in
``conf/loss/*.yaml``; this wrapper only calls them, weights the result and exposes the class proxies
of proxy-based losses in one shape, so that regularizers (AntiCo, NIR) can read them:

    proxies:       (P, d) tensor, the loss's own learnable parameter (a view, gradients flow into it)
    proxy_labels:  (P,)   the training class of each proxy (SoftTriple owns several per class)

Two optimizer-facing options for the loss's own parameters: ``proxy_init_std`` (null: the loss's own
initialisation; a number s: proxies drawn from N(0, s^2), e.g. 0.125 for the NIR and AntiCo releases'
``torch.randn(C, d) / 8``) and ``weight_decay`` (null: the optimizer's; e.g. 0, as the authors' proxy groups).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.errors import ConfigError

# PML attribute holding the proxies, and whether it is stored transposed (d x P).
_PROXY_ATTRS = (("proxies", False), ("W", True), ("fc", True))


class MetricLoss(nn.Module):
    def __init__(
        self,
        name: str,
        loss: nn.Module,
        miner=None,
        weight: float = 1.0,
        lr_mult: float = 1.0,
        proxy_init_std: float | None = None,
        weight_decay: float | None = None,
    ):
        super().__init__()
        self.name = name
        self.loss = loss
        self.miner = miner
        self.weight = float(weight)
        self.lr_mult = float(lr_mult)
        if self.weight < 0:
            raise ConfigError(f"loss.weight={weight} must be >= 0")
        if weight_decay is not None and weight_decay < 0:
            raise ConfigError(f"loss.weight_decay={weight_decay} must be >= 0, or null for the optimizer's")
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        if proxy_init_std is not None:
            found = self._proxy_param()
            if found is None or not proxy_init_std > 0:
                raise ConfigError(
                    f"loss.proxy_init_std={proxy_init_std}: needs a proxy-based loss and a value > 0 "
                    f"(e.g. 0.125), or null for the loss's own initialisation"
                )
            with torch.no_grad():
                found[0].normal_(0.0, float(proxy_init_std))  # from torch's global generator, seeded by the run

    @property
    def is_proxy_based(self) -> bool:
        return self._proxy_param() is not None

    def _proxy_param(self):
        for attr, transposed in _PROXY_ATTRS:
            p = getattr(self.loss, attr, None)
            if isinstance(p, torch.Tensor) and p.ndim == 2:
                return p, transposed
        return None

    @property
    def proxies(self) -> torch.Tensor | None:
        found = self._proxy_param()
        if found is None:
            return None
        p, transposed = found
        return p.t() if transposed else p

    @property
    def proxies_per_class(self) -> int:
        return int(getattr(self.loss, "centers_per_class", 1))

    @property
    def proxy_labels(self) -> torch.Tensor | None:
        p = self.proxies
        if p is None:
            return None
        return torch.arange(p.shape[0], device=p.device) // self.proxies_per_class

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        indices = self.miner(embeddings, labels) if self.miner is not None else None
        return self.weight * self.loss(embeddings, labels, indices)

    def param_groups(self) -> list:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        group = {"name": "loss", "params": params, "lr_mult": self.lr_mult}
        if self.weight_decay is not None:
            group["weight_decay"] = self.weight_decay
        return [group]
