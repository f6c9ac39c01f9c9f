"""Class-disjoint splits: validation classes are carved from the training classes, seeded."""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError


def expand_classes(spec) -> list:
    """Accept a list of class ids, or a ``{first: a, last: b}`` inclusive range (the papers' "classes 1-100")."""
    if spec is None:
        return []
    if hasattr(spec, "keys") and "first" in spec:
        return list(range(int(spec["first"]), int(spec["last"]) + 1))
    return [c if isinstance(c, str) else int(c) for c in spec]


def carve_validation(train_classes: list, val_classes=None, val_fraction: float = 0.0, seed: int = 0):
    """Split training classes into (train, val), class-disjoint.

    ``val_classes`` (explicit) wins over ``val_fraction`` (a seeded random subset of the training classes).
    Returns two sorted lists.
    """
    train_classes = list(train_classes)
    if val_classes:
        val = expand_classes(val_classes)
        # explicit validation classes: carved from the training list, or a separate held-out list
        return sorted(set(train_classes) - set(val)), sorted(val)
    if val_fraction and val_fraction > 0:
        if not 0 < val_fraction < 1:
            raise ConfigError(
                f"dataset.val_fraction={val_fraction} must be in (0, 1); set e.g. dataset.val_fraction=0.2"
            )
        rng = np.random.default_rng(seed)
        n_val = max(2, int(round(val_fraction * len(train_classes))))
        if len(train_classes) < 4:  # 2 validation classes at least, 2 training classes left: no fraction helps
            raise ConfigError(
                f"only {len(train_classes)} training class(es): a validation split needs 2 more classes besides 2 for "
                f"training; add classes (at least 4 training classes), or list dataset.val_classes of held-out classes"
            )
        if n_val >= len(train_classes) - 1:
            raise ConfigError(
                f"dataset.val_fraction={val_fraction} leaves fewer than 2 training classes "
                f"of {len(train_classes)}; lower it"
            )
        order = rng.permutation(len(train_classes))
        val = [train_classes[i] for i in order[:n_val]]
        return sorted(set(train_classes) - set(val)), sorted(val)
    return sorted(train_classes), []


def check_disjoint(**splits) -> None:
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = set(splits[a]) & set(splits[b])
            if common:
                raise ConfigError(
                    f"dataset {a} and {b} classes overlap ({sorted(common)[:5]}...); make the class lists disjoint"
                )
