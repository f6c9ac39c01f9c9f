"""One training step's batch as the network embedded it: what the base loss and every regularizer receive.

A neutral module: the training step builds it (harness.distributed gathers it across processes) and the
regularizers read it (harness/regularizers/base.py states their contract).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


def all_rows(n: int) -> slice:
    return slice(0, n)


def as_is(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class Batch:
    inputs: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor  # backbone output before pooling (model.features(inputs))
    embeddings: torch.Tensor  # model.embed(features)
    step: int = 0  # global training step (for schedules and seeded randomness)
    epoch: int = 0
    share: Callable[[int], slice] = all_rows  # this process's rows of n rows computed per batch
    gather: Callable[[torch.Tensor], torch.Tensor] = as_is  # every process's rows, in order, gradients kept
