"""Training batches, a pure function of (seed, epoch): M-per-class batches, or random (class-agnostic) ones.

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

    The authors' samplers draw with replacement instead, which two switches reproduce:
    ``class_replacement``: each of the batch's ``batch_size // m`` class draws is uniform over all classes, so a
    class can come twice (Roth et al.'s ``class_random`` sampler of the NIR and AntiCo releases);
    ``sample_replacement``: each class's ``m`` samples are drawn uniformly with replacement (the same sampler,
    and Metrix's balanced sampler), which also serves classes with fewer than ``m`` samples.
    """

    def __init__(
        self,
        labels,
        m: int,
        batch_size: int,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        class_replacement: bool = False,
        sample_replacement: bool = False,
    ):
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
        self.class_replacement, self.sample_replacement = bool(class_replacement), bool(sample_replacement)
        if self.classes_per_batch > len(classes) and not self.class_replacement:
            raise ConfigError(
                f"a batch of {batch_size} with m={m} needs {self.classes_per_batch} classes but the training split has "
                f"{len(classes)}; lower sampler.batch_size to {len(classes) * m} or raise sampler.m"
            )
        small = classes[counts < m]
        if len(small) and not self.sample_replacement:
            raise ConfigError(
                f"training class {small[0]} has {counts[classes == small[0]][0]} samples, fewer than sampler.m={m} "
                f"({len(small)} such classes); lower sampler.m to {int(counts.min())} or drop those classes"
            )
        self.m, self.batch_size, self.seed, self.epoch = m, batch_size, seed, 0
        self.classes = classes
        self.by_class = [np.flatnonzero(labels == c) for c in classes]
        # None: one pass over the split; 0 or less is refused by harness.config (never silently the default)
        self.batches_per_epoch = int(
            max(1, len(labels) // batch_size) if batches_per_epoch is None else batches_per_epoch
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        if self.class_replacement or self.sample_replacement:
            yield from self._with_replacement(np.random.default_rng([self.seed, self.epoch]))
            return
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

    def _with_replacement(self, rng):
        for _ in range(self.batches_per_epoch):
            if self.class_replacement:
                chosen = rng.integers(len(self.by_class), size=self.classes_per_batch)
            else:
                chosen = rng.choice(len(self.by_class), size=self.classes_per_batch, replace=False)
            batch = []
            for c in chosen:
                ix = self.by_class[c]
                picked = rng.choice(ix, size=self.m, replace=self.sample_replacement or len(ix) < self.m)
                batch.extend(picked.tolist())
            yield batch


class RandomBatchSampler(Sampler):
    """Class-agnostic batches: a fresh permutation of the split each epoch, cut into ``batch_size`` batches,
    the last incomplete one dropped (``DataLoader(shuffle=True, drop_last=True)``, as the Metrix release on
    CUB and Cars). ``batches_per_epoch`` (default ``len(labels) // batch_size``) may ask for fewer, or more
    (the permutation then continues with a fresh one)."""

    def __init__(self, labels, batch_size: int, batches_per_epoch: int | None = None, seed: int = 0):
        n = len(labels)
        if batch_size < 1 or batch_size > n:
            raise ConfigError(f"sampler.batch_size={batch_size} must be between 1 and the training split's {n} samples")
        self.n, self.batch_size, self.seed, self.epoch = n, int(batch_size), seed, 0
        self.batches_per_epoch = int(max(1, n // batch_size) if batches_per_epoch is None else batches_per_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order, cursor = rng.permutation(self.n), 0
        for _ in range(self.batches_per_epoch):
            if cursor + self.batch_size > len(order):
                order, cursor = rng.permutation(self.n), 0
            yield order[cursor : cursor + self.batch_size].tolist()
            cursor += self.batch_size
