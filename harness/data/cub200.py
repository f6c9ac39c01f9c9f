"""CUB-200-2011 (Wah et al., 2011): 11,788 bird images of 200 species.

Layout of the official release (``CUB_200_2011.tgz``), which ``root`` points at:

    CUB_200_2011/images.txt               "<image_id> <NNN.Name/file.jpg>"
    CUB_200_2011/image_class_labels.txt   "<image_id> <class_id 1..200>"
    CUB_200_2011/images/NNN.Name/*.jpg

Zero-shot protocol: train on classes 1-100 (5,864 images), test on 101-200 (5,924 images).
"""

from __future__ import annotations

from harness.data.base import DMLData
from harness.data.images import build_dml_data, require_files, require_images, resolve_root

SOURCE = "https://www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz)"
LAYOUT = "images.txt, image_class_labels.txt and images/NNN.Name/*.jpg (the CUB_200_2011 folder of the release)"


def load_cub200(
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
    if not (root / "images.txt").exists() and (root / "CUB_200_2011" / "images.txt").exists():
        root = root / "CUB_200_2011"  # pointed at the folder the archive was extracted into
    require_files(root, ["images.txt", "image_class_labels.txt", "images"], "CUB-200-2011", LAYOUT, SOURCE)
    files = dict(read_pairs(root / "images.txt"))
    classes = {k: int(v) for k, v in read_pairs(root / "image_class_labels.txt")}
    ids = sorted(files, key=int)
    paths = [str(root / "images" / files[i]) for i in ids]
    require_images(paths, "CUB-200-2011", root, SOURCE)
    return build_dml_data(
        "cub200",
        paths,
        [classes[i] for i in ids],
        train_classes or {"first": 1, "last": 100},
        test_classes or {"first": 101, "last": 200},
        val_classes=val_classes,
        val_fraction=val_fraction,
        seed=seed,
        transform=transform,
        on_corrupt=on_corrupt,
        fast_decode=fast_decode,
        class_names={classes[i]: files[i].split("/", 1)[0] for i in ids},
    )


def read_pairs(path) -> list:
    """Lines of ``<key> <value>`` (the CUB metadata files)."""
    return [tuple(line.split(maxsplit=1)) for line in path.read_text().splitlines() if line.strip()]
