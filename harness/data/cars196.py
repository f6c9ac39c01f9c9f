"""Cars196 / Stanford Cars (Krause et al., 2013): 16,185 images of 196 car models.

Two layouts are read from ``root``:

* the official release: ``cars_annos.mat`` (every image's ``relative_im_path`` and ``class`` 1..196)
  beside ``car_ims/*.jpg``. Protocol: train on classes 1-98 (8,054 images), test on 99-196 (8,131).
* class-per-folder, as many mirrors ship it: ``<class name>/*.jpg`` under ``root``, or under
  ``root/train`` and ``root/test`` (folders of the same name are merged: the mirrors' train/test is the
  classification split, not the DML one). Classes are numbered 1..N in sorted folder-name order, so
  "classes 1-98" are the first 98 names in sorted order: the split of Roth et al.'s DML codebase (which
  the NIR authors use). It equals the official split only where the folder names sort in official
  class-id order (e.g. zero-padded ids); sorted model names do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.base import DMLData
from harness.data.image_folder import scan_class_folders
from harness.data.images import build_dml_data, require_images, resolve_root
from harness.errors import DataError

SOURCE = (
    "the Stanford Cars release (car_ims.tgz and cars_annos.mat, http://ai.stanford.edu/~jkrause/cars/"
    "car_dataset.html, mirrored on Kaggle and Hugging Face)"
)
LAYOUT = "cars_annos.mat and car_ims/*.jpg, or one folder of images per class (optionally under train/ and test/)"


def load_cars196(
    root,
    train_classes=None,
    test_classes=None,
    val_classes=None,
    val_fraction: float = 0.2,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    fast_decode: bool = True,
) -> DMLData:
    root = resolve_root(root)
    if (root / "cars_annos.mat").exists():
        paths, class_ids, names = read_cars_annos(root)
    else:
        folders = [root / s for s in ("train", "test") if (root / s).is_dir()] or [root]
        paths, class_ids, names = scan_class_folders(folders) if root.is_dir() else ([], [], {})
        if not paths:
            where = "does not exist" if not root.exists() else "has neither cars_annos.mat nor class folders of images"
            raise DataError(
                f"Cars196 not found: {root} {where}. Expected there: {LAYOUT}. "
                f"Download it from {SOURCE} and set dataset.root (or paths.data)"
            )
    require_images(paths, "Cars196", root, SOURCE)
    return build_dml_data(
        "cars196",
        paths,
        class_ids,
        train_classes or {"first": 1, "last": 98},
        test_classes or {"first": 99, "last": 196},
        val_classes=val_classes,
        val_fraction=val_fraction,
        seed=seed,
        transform=transform,
        on_corrupt=on_corrupt,
        fast_decode=fast_decode,
        class_names=names,
    )


def read_cars_annos(root: Path) -> tuple:
    """Image paths, class ids (1..196) and class names from the official ``cars_annos.mat``."""
    # lazy: heavy (scipy), only to read Cars196's .mat annotations
    from scipy.io import loadmat

    try:
        mat = loadmat(root / "cars_annos.mat", squeeze_me=True)
        ann = np.atleast_1d(mat["annotations"])
        paths = [str(root / str(p)) for p in ann["relative_im_path"]]
        class_ids = [int(c) for c in ann["class"]]
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise DataError(
            f"{root / 'cars_annos.mat'} is not the Stanford Cars annotation file ({err}); "
            f"download cars_annos.mat again from {SOURCE}"
        ) from None
    names = np.atleast_1d(mat.get("class_names", np.array([])))
    return paths, class_ids, {i + 1: str(n) for i, n in enumerate(names)}
