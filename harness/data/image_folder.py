"""Any class-per-folder image tree (``root/<class>/<image>``), for a user's own data.

Classes are the sub-folders of ``root``, numbered 1..N in sorted name order. The zero-shot split is
class-disjoint, either by explicit class lists (folder names, or a ``{first, last}`` range of numbers)
or by a seeded fraction of the classes held out for test; validation classes are carved from the
training classes the same way as for every dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.base import DMLData
from harness.data.images import IMAGE_EXTENSIONS, build_dml_data, resolve_root
from harness.errors import ConfigError, DataError

LAYOUT = "one sub-folder of images per class (root/<class>/<image>.jpg)"


MIN_CLASSES = 4  # 2 training, 1 validation and 1 test class at the very least


def load_image_folder(
    root,
    train_classes=None,
    test_classes=None,
    val_classes=None,
    test_fraction: float = 0.5,
    val_fraction: float = 0.2,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    fast_decode: bool = True,
) -> DMLData:
    """``test_classes`` (or else ``train_classes``) chooses the split; with neither, ``test_fraction`` of
    the classes, drawn with ``seed``, are the test classes."""
    root = resolve_root(root)
    paths, class_ids, names = scan_class_folders([root]) if root.is_dir() else ([], [], {})
    if not paths:
        where = "does not exist" if not root.exists() else "has no class folder with images"
        raise DataError(
            f"image folder not found: {root} {where}. Expected there: {LAYOUT} "
            f"(extensions {', '.join(IMAGE_EXTENSIONS)}); set dataset.root"
        )
    ids = {name: i for i, name in names.items()}
    everything = sorted(names)
    if len(everything) < MIN_CLASSES:
        raise DataError(
            f"image folder {root} has {len(everything)} class folder(s) ({', '.join(sorted(ids)[:4])}); "
            f"metric learning needs at least {MIN_CLASSES} disjoint classes (2 training, 1 validation, "
            f"1 test): add one sub-folder per class"
        )
    if test_classes is not None:
        test_c = to_ids(test_classes, ids)
        train_c = (
            to_ids(train_classes, ids) if train_classes is not None else [c for c in everything if c not in test_c]
        )
    elif train_classes is not None:
        train_c = to_ids(train_classes, ids)
        test_c = [c for c in everything if c not in train_c]
    else:
        if not 0 < test_fraction < 1:
            raise ConfigError(f"dataset.test_fraction={test_fraction} must be in (0, 1), or list dataset.test_classes")
        order = np.random.default_rng(seed).permutation(everything)
        n_test = max(1, int(round(test_fraction * len(everything))))
        test_c, train_c = sorted(order[:n_test].tolist()), sorted(order[n_test:].tolist())
    return build_dml_data(
        "image_folder",
        paths,
        class_ids,
        train_c,
        test_c,
        val_classes=to_ids(val_classes, ids) if val_classes else None,
        val_fraction=val_fraction,
        seed=seed,
        transform=transform,
        on_corrupt=on_corrupt,
        fast_decode=fast_decode,
        class_names=names,
    )


def scan_class_folders(folders) -> tuple:
    """(paths, class ids, {id: name}) of the images in ``<folder>/<class>/`` for every folder given.

    Same-named class folders under several roots (a mirror's train/ and test/) are one class.
    """
    by_name: dict = {}
    for folder in folders:
        for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
            files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            if files:
                by_name.setdefault(sub.name, []).extend(files)
    names = {i + 1: name for i, name in enumerate(sorted(by_name))}
    paths, class_ids = [], []
    for i, name in names.items():
        paths += [str(f) for f in by_name[name]]
        class_ids += [i] * len(by_name[name])
    return paths, class_ids, names


def to_ids(spec, ids: dict) -> list:
    """Class ids from folder names, or from a ``{first, last}`` range of class numbers."""
    if hasattr(spec, "keys") and "first" in spec:
        return list(range(int(spec["first"]), int(spec["last"]) + 1))
    unknown = [c for c in spec if str(c) not in ids]
    if unknown:
        raise ConfigError(
            f"class folder {unknown[0]!r} does not exist ({len(unknown)} unknown); classes are the "
            f"sub-folders of dataset.root, e.g. {sorted(ids)[:3]} (quote names such as '001' in YAML)"
        )
    return sorted(ids[str(c)] for c in spec)
