"""A small MLP backbone for vector inputs (the digits default)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``in_features -> hidden[0] -> ... -> hidden[-1]`` with ReLU (and optional BatchNorm / dropout).

    ``forward_features`` returns the last hidden layer: the "feature" level that Metrix mixes and that
    the embedding head reads. ``num_features`` is its width (timm's convention).
    """

    def __init__(
        self, in_features: int = 64, hidden: tuple = (256, 256), batchnorm: bool = False, dropout: float = 0.0
    ):
        super().__init__()
        layers, width = [], in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))

    def forward(self, x):
        return self.forward_features(x)
