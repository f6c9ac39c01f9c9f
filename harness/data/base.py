"""What every dataset loader returns: a training set and class-disjoint evaluation sets.

A dataset config (`conf/dataset/*.yaml`) instantiates to a :class:`DMLData`. Every split is a torch
``Dataset`` yielding ``(input, label)`` and exposing ``labels`` (a 1-D int64 numpy array) so that
samplers and evaluation never have to iterate over images to learn the labels.
Training labels are remapped to ``0..C-1`` (proxy losses index their proxies with them); evaluation
labels keep the dataset's own class ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.errors import ConfigError


class ArrayDataset(Dataset):
    """An in-memory split: a tensor of inputs and their labels. Batched reads skip per-item collation."""

    def __init__(self, inputs: torch.Tensor, labels: np.ndarray):
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs = inputs
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.inputs[i], int(self.labels[i])

    def __getitems__(self, indices):  # used by DataLoader for a whole batch at once
        idx = torch.as_tensor(indices, dtype=torch.long)
        return [(self.inputs[idx], torch.from_numpy(self.labels[idx.numpy()]))]


class InMemoryLoader:
    """The training loader of an ``ArrayDataset`` read in the main process: each epoch takes all its batches
    from the batch sampler up front and gathers them ``chunk`` batches per index op; a step then only takes
    views. The same batches in the same order as a ``DataLoader`` over the same sampler, without its per-step
    Python machinery (about 10% of a small model's step on CPU: ``python -m harness.bench --only training_loop``).

    ``device`` (``dataset.on_device``): the split lives there, copied once; the sampler still draws the batches'
    indices on the host (its numpy stream defines them), they go to the device in one pinned, non-blocking copy per
    chunk, and the gather runs there: no per-batch copy of the inputs from host memory."""

    def __init__(self, dataset: ArrayDataset, batch_sampler, chunk: int = 16, device: torch.device | None = None):
        self.dataset, self.batch_sampler, self.chunk = dataset, batch_sampler, chunk
        self.device = torch.device(device) if device is not None else None
        self.inputs = dataset.inputs if self.device is None else dataset.inputs.to(self.device)
        self.labels = torch.from_numpy(dataset.labels)
        if self.device is not None:
            self.labels = self.labels.to(self.device)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        batches = [torch.as_tensor(batch, dtype=torch.long) for batch in self.batch_sampler]
        for start in range(0, len(batches), self.chunk):
            group = batches[start : start + self.chunk]
            idx, sizes = torch.cat(group), [len(b) for b in group]
            if self.device is not None and self.device.type == "cuda":
                idx = idx.pin_memory().to(self.device, non_blocking=True)
            elif self.device is not None:
                idx = idx.to(self.device)
            yield from zip(self.inputs[idx].split(sizes), self.labels[idx].split(sizes))


ON_DEVICE = ("auto", True, False)


def data_device(on_device, device: torch.device) -> torch.device | None:
    """Where an in-memory split lives (``dataset.on_device``): auto is the run's device when that is a GPU;
    true is the run's device; false (and auto on CPU) is host memory (None)."""
    if on_device not in ON_DEVICE:
        raise ConfigError(f"dataset.on_device={on_device!r} must be auto (on a GPU), true or false")
    if on_device is True or (on_device == "auto" and device.type == "cuda"):
        return device
    return None


def collate_batch(samples):
    """Collate for loaders over datasets that may implement ``__getitems__`` (already batched)."""
    if (
        len(samples) == 1
        and isinstance(samples[0], tuple)
        and torch.is_tensor(samples[0][1])
        and samples[0][1].ndim == 1
    ):
        return samples[0]
    return torch.utils.data.default_collate(samples)


@dataclass
class EvalSet:
    """An evaluation split. Without a gallery each query is searched among the other queries
    (leave-one-out, the CUB/Cars/SOP protocol); with one, queries are searched in the gallery (In-Shop)."""

    query: Dataset
    gallery: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(np.unique(self.query.labels))


@dataclass
class DMLData:
    name: str
    train: Dataset
    val: EvalSet | None
    test: EvalSet
    # True when inputs are plain vectors: the evaluation then also scores the raw inputs as a baseline.
    vector_inputs: bool = False
    class_names: dict = field(default_factory=dict)
    # Test-time preprocessing, so that a reloaded run embeds new data exactly as it was evaluated.
    eval_transform: object = None
    # In-memory splits: whether training reads them on the run's device (auto | true | false, see data_device).
    on_device: object = "auto"

    @property
    def num_classes(self) -> int:
        """Number of training classes (proxy losses own one proxy per training class)."""
        return int(len(np.unique(self.train.labels)))

    @property
    def input_shape(self) -> tuple:
        x, _ = self.train[0]
        return tuple(x.shape)


def remap_labels(labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Map arbitrary class ids to 0..C-1 (sorted), returning the new labels and the mapping."""
    classes = np.unique(labels)
    mapping = {int(c): i for i, c in enumerate(classes)}
    return np.array([mapping[int(c)] for c in labels], dtype=np.int64), mapping
