"""Class-disjoint splits: validation classes are carved from the training classes, seeded, or as one fold of k.

``dataset.val_classes`` takes three forms: a list of class ids, a ``{first, last}`` range, or a fold of the
Reality Check protocol, ``"fold i of k"`` (``conf/protocol/reality_check.yaml`` sets it): the training
classes, sorted, are cut into k contiguous class-disjoint parts (sizes differ by at most one); fold i validates
on part i and trains on the other k - 1. Contiguous ranges of the sorted class ids, no seed: the split of
Musgrave, Belongie, Lim, "A Metric Learning Reality Check" (ECCV 2020) as powerful-benchmarker draws it
(KevinMusgrave/powerful-benchmarker, src/powerful_benchmarker/split_managers/mlrc_split_manager.py), whose
partition p validates on another of the same k quarters (the numbering of the folds differs, not the folds).
"""

from __future__ import annotations

import re

import numpy as np

from harness.errors import ConfigError


def expand_classes(spec) -> list:
    """Accept a list of class ids, or a ``{first: a, last: b}`` inclusive range (the papers' "classes 1-100")."""
    if spec is None:
        return []
    if hasattr(spec, "keys") and "first" in spec:
        return list(range(int(spec["first"]), int(spec["last"]) + 1))
    return [c if isinstance(c, str) else int(c) for c in spec]


FOLD = re.compile(r"^fold (-?\d+) of (-?\d+)$")


def parse_fold(spec) -> tuple[int, int] | None:
    """``"fold i of k"``: (i, k), one fold of a k-fold class-disjoint split of the training classes; else None.
    (A string, so that it can replace a list of class ids when the configs are merged.)"""
    if not isinstance(spec, str):
        return None
    match = FOLD.match(spec.strip())
    if not match:
        raise ConfigError(
            f"dataset.val_classes={spec!r} is not a class list; the fold form reads 'fold I of K', e.g. "
            f"protocol=reality_check protocol.fold=0 (which sets it)"
        )
    return int(match[1]), int(match[2])


def fold_classes(train_classes: list, folds, fold) -> tuple[list, list]:
    """Fold ``fold`` of ``folds``: (the other folds' classes, this fold's classes), each sorted. Every fold needs
    2 classes at least (a 1-class validation split scores 1.0 whatever the network), so k folds need 2k classes."""
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"protocol.fold={fold} of protocol.folds={folds}: use folds >= 2 and 0 <= fold < folds")
    ordered = sorted(train_classes)
    if len(ordered) < 2 * folds:
        raise ConfigError(
            f"{len(ordered)} training classes cannot make {folds} folds of 2 classes or more; lower protocol.folds "
            f"(at most {len(ordered) // 2}) or train on more classes (dataset.train_classes)"
        )
    part = [list(chunk) for chunk in np.array_split(np.asarray(ordered, dtype=object), folds)][fold]
    return sorted(set(ordered) - set(part)), sorted(part)


def carve_validation(train_classes: list, val_classes=None, val_fraction: float = 0.0, seed: int = 0):
    """Split training classes into (train, val), class-disjoint.

    ``val_classes`` (explicit, or a fold ``"fold i of k"``) wins over ``val_fraction`` (a seeded random
    subset of the training classes).
    Returns two sorted lists.
    """
    train_classes = list(train_classes)
    fold = parse_fold(val_classes)
    if fold is not None:
        return fold_classes(train_classes, folds=fold[1], fold=fold[0])
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
