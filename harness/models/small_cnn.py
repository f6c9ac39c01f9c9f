"""A small CNN for small images (Omniglot, low-resolution CPU runs)."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """``depth`` blocks of conv3x3-BN-ReLU-maxpool, doubling the width from ``width``.

    ``forward_features`` returns the last feature map (B x C x H x W), pooled by the embedding model.
    """

    def __init__(self, in_chans: int = 1, width: int = 32, depth: int = 4):
        super().__init__()
        blocks, c_in = [], in_chans
        for i in range(depth):
            c_out = width * 2 ** min(i, 3)
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.net = nn.Sequential(*blocks)
        self.num_features = c_in

    def forward_features(self, x):
        return self.net(x)

    def forward(self, x):
        return self.forward_features(x).mean(dim=(2, 3))
