"""The model every run trains: a backbone, pooling, and a linear embedding head.

    x --backbone.forward_features--> features --pool--> pooled --head--> embedding (L2-normalised)

``features`` (before pooling) is what feature-level Metrix mixes; ``embed`` takes features to embeddings.
The head's initialisation (``head.init``): PyTorch's ``nn.Linear`` default, or ``kaiming_normal_fan_out``
(weight ~ Kaiming normal over fan-out, bias 0, as the Metrix release).
Any backbone works that exposes ``forward_features`` and ``num_features`` (timm models, MLP, SmallCNN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import check_embed_dim
from harness.errors import ConfigError

POOLINGS = ("avg", "max", "double", "token")
HEAD_INITS = ("default", "kaiming_normal_fan_out")


class EmbeddingModel(nn.Module):
    def __init__(
        self, backbone: nn.Module, embed_dim: int, normalize: bool = True, pooling: str = "avg", init: str = "default"
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"head.pooling={pooling!r} is unknown; use one of {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = normalize
        self.embed_dim = check_embed_dim(embed_dim)
        self.head = nn.Linear(int(backbone.num_features), self.embed_dim)
        if init not in HEAD_INITS:
            raise ConfigError(f"head.init={init!r} is unknown; use one of {', '.join(HEAD_INITS)}")
        if init == "kaiming_normal_fan_out":  # Metrix's (and the Proxy Anchor code's) embedding layer
            nn.init.kaiming_normal_(self.head.weight, mode="fan_out")
            nn.init.zeros_(self.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim == 2:
            return f
        if f.ndim == 3:  # transformer tokens: the backbone's own head pooling (class token or average)
            return self.backbone.forward_head(f, pre_logits=True)
        if self.pooling == "avg":
            return f.mean(dim=(2, 3))
        if self.pooling == "max":
            return f.amax(dim=(2, 3))
        if self.pooling == "double":  # global average + max, as in the ProxyAnchor / AntiCo code
            return f.mean(dim=(2, 3)) + f.amax(dim=(2, 3))
        return f.mean(dim=(2, 3))

    def embed(self, f: torch.Tensor) -> torch.Tensor:
        z = self.head(self.pool(f))
        return F.normalize(z, dim=-1) if self.normalize else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(x))

    def param_groups(self) -> list:
        """Backbone and head as separate optimizer groups (their lr multipliers are set in config)."""
        return [
            {"name": "backbone", "params": [p for p in self.backbone.parameters() if p.requires_grad]},
            {"name": "head", "params": list(self.head.parameters())},
        ]
