"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped inside scikit-learn.

The embedded default of the harness: no download, seconds per run on a CPU, and it already shows
embedding collapse (see README). Inputs are the 64 pixel intensities scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from harness.data.base import ArrayDataset, DMLData, EvalSet, remap_labels
from harness.data.splits import carve_validation, check_disjoint, expand_classes
from harness.errors import ConfigError


def load_digits(
    train_classes, test_classes, val_classes=None, val_fraction: float = 0.0, seed: int = 0, on_device="auto"
) -> DMLData:
    """Zero-shot split of the digits: train on ``train_classes``, evaluate on unseen ``test_classes``.

    Validation classes are carved from ``train_classes`` (explicit ``val_classes`` or a seeded
    ``val_fraction``), so model selection never sees a test class. ``on_device``: where training reads the
    split (auto: on the run's GPU; harness.data.base.data_device).
    """
    # lazy: heavy (scikit-learn), only for this dataset
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = scale_raw(bunch.data)
    y = np.asarray(bunch.target, dtype=np.int64)

    train_c, val_c = carve_validation(expand_classes(train_classes), val_classes, val_fraction, seed)
    test_c = expand_classes(test_classes)
    check_disjoint(train=train_c, val=val_c, test=test_c)
    for c in train_c + val_c + test_c:
        if c not in range(10):
            raise ConfigError(
                f"digits has classes 0-9, not {c}; fix dataset.train_classes / val_classes / test_classes"
            )
    if len(train_c) < 2:
        raise ConfigError("digits needs at least 2 training classes; add classes to dataset.train_classes")

    def subset(classes, remap=False):
        mask = np.isin(y, classes)
        labels = y[mask]
        if remap:
            labels, _ = remap_labels(labels)
        return ArrayDataset(x[torch.from_numpy(mask)], labels)

    return DMLData(
        name="digits",
        train=subset(train_c, remap=True),
        val=EvalSet(subset(val_c)) if val_c else None,
        test=EvalSet(subset(test_c)),
        vector_inputs=True,
        eval_transform=scale_raw,
        on_device=on_device,
    )


def scale_raw(x) -> torch.Tensor:
    """scikit-learn's raw intensities (0-16, one row of 64 per image, or a batch of rows) as the network sees
    them: scaled to [0, 1]."""
    return torch.as_tensor(np.asarray(x), dtype=torch.float32) / 16.0


scale_raw.batched = True  # a reloaded run applies it to a whole array of raw rows at once


def eval_preprocess(**_):
    """What :func:`load_digits` does to a raw input before the network sees it (for ``load_run``)."""
    return scale_raw


load_digits.eval_preprocess = eval_preprocess
