"""M-per-class batches, a pure function of (seed, epoch).

pytorch-metric-learning's ``MPerClassSampler`` draws from a module-level numpy RandomState (global
state that a resumed run would have to restore from outside) and silently samples with replacement
from classes smaller than ``m``. This sampler owns its generator, seeded with ``(seed, epoch)``, so the
batches of epoch e are the same in an uninterrupted and a resumed run, and it rejects a split that
cannot fill its batches with a one-line fix.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from harness.errors import ConfigError


class MPerClassBatchSampler(Sampler):
    """Batches of ``batch_size // m`` classes with ``m`` samples each, without replacement within a batch.

    Classes are visited in a shuffled round-robin and each class's samples in a shuffled queue, so one
    epoch covers the split about evenly. ``batches_per_epoch`` defaults to ``len(labels) // batch_size``.
    """

    def __init__(self, labels, m: int, batch_size: int, batches_per_epoch: int | None = None, seed: int = 0):
        labels = np.asarray(labels)
        if m < 1 or batch_size < 1:
            raise ConfigError(f"sampler.m={m} and sampler.batch_size={batch_size} must be positive")
        if batch_size % m:
            raise ConfigError(
                f"sampler.m={m} does not divide sampler.batch_size={batch_size}; "
                f"use a multiple of m, e.g. sampler.batch_size={batch_size // m * m or m}"
            )
        classes, counts = np.unique(labels, return_counts=True)
        self.classes_per_batch = batch_size // m
        if self.classes_per_batch > len(classes):
            raise ConfigError(
                f"a batch of {batch_size} with m={m} needs {self.classes_per_batch} classes but the training split has "
                f"{len(classes)}; lower sampler.batch_size to {len(classes) * m} or raise sampler.m"
            )
        small = classes[counts < m]
        if len(small):
            raise ConfigError(
                f"training class {small[0]} has {counts[classes == small[0]][0]} samples, fewer than sampler.m={m} "
                f"({len(small)} such classes); lower sampler.m to {int(counts.min())} or drop those classes"
            )
        self.m, self.batch_size, self.seed, self.epoch = m, batch_size, seed, 0
        self.classes = classes
        self.by_class = [np.flatnonzero(labels == c) for c in classes]
        self.batches_per_epoch = int(batches_per_epoch or max(1, len(labels) // batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = [rng.permutation(ix) for ix in self.by_class]
        heads = np.zeros(len(queues), dtype=np.int64)
        order = rng.permutation(len(queues))
        cursor = 0
        for _ in range(self.batches_per_epoch):
            if cursor + self.classes_per_batch > len(order):
                order = np.concatenate([order[cursor:], rng.permutation(len(queues))])
                cursor = 0
            chosen, picked = order[cursor : cursor + self.classes_per_batch], set()
            # a class may appear twice across the seam of two permutations: replace repeats
            fixed = []
            for c in chosen:
                if c in picked:
                    c = rng.choice([k for k in range(len(queues)) if k not in picked])
                picked.add(c)
                fixed.append(c)
            cursor += self.classes_per_batch
            batch = []
            for c in fixed:
                q = queues[c]
                if heads[c] + self.m > len(q):
                    queues[c] = q = rng.permutation(self.by_class[c])
                    heads[c] = 0
                batch.extend(q[heads[c] : heads[c] + self.m].tolist())
                heads[c] += self.m
            yield batch
