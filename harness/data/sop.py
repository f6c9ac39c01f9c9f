"""Stanford Online Products (Oh Song et al., CVPR 2016): 120,053 images of 22,634 products.

Layout of the release (``Stanford_Online_Products.zip``), which ``root`` points at:

    Ebay_train.txt   "image_id class_id super_class_id path" header, then one line per image
    Ebay_test.txt    same columns
    <category>_final/<product images>.JPG

Protocol: train on the 11,318 classes of Ebay_train.txt (59,551 images), test on the 11,316 classes of
Ebay_test.txt (60,502 images), Recall@1, 10, 100, 1000 (conf/dataset/sop.yaml sets eval.k).
"""

from __future__ import annotations

from harness.data.base import DMLData
from harness.data.images import build_dml_data, require_files, require_images, resolve_root
from harness.errors import DataError

SOURCE = "https://cvgl.stanford.edu/projects/lifted_struct/ (Stanford_Online_Products.zip)"
LAYOUT = "Ebay_train.txt, Ebay_test.txt and the <category>_final/ image folders"


def load_sop(
    root,
    train_file: str = "Ebay_train.txt",
    test_file: str = "Ebay_test.txt",
    val_classes=None,
    val_fraction: float = 0.1,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    fast_decode: bool = True,
) -> DMLData:
    root = resolve_root(root)
    if not (root / train_file).exists() and (root / "Stanford_Online_Products" / train_file).exists():
        root = root / "Stanford_Online_Products"
    require_files(root, [train_file, test_file], "Stanford Online Products", LAYOUT, SOURCE)
    train_paths, train_ids = read_ebay_list(root, train_file)
    test_paths, test_ids = read_ebay_list(root, test_file)
    paths, ids = train_paths + test_paths, train_ids + test_ids
    require_images(paths, "Stanford Online Products", root, SOURCE)
    return build_dml_data(
        "sop",
        paths,
        ids,
        sorted(set(train_ids)),
        sorted(set(test_ids)),
        val_classes=val_classes,
        val_fraction=val_fraction,
        seed=seed,
        transform=transform,
        on_corrupt=on_corrupt,
        fast_decode=fast_decode,
    )


def read_ebay_list(root, name: str) -> tuple:
    """(paths, class ids) of an ``Ebay_*.txt`` file."""
    lines = (root / name).read_text().splitlines()
    header = lines[0].split() if lines else []
    if header[:2] != ["image_id", "class_id"] or "path" not in header:
        raise DataError(
            f"{root / name} does not start with the header 'image_id class_id super_class_id path'; "
            f"it is not an SOP list file: re-extract it from {SOURCE}"
        )
    col_class, col_path = header.index("class_id"), header.index("path")
    rows = [line.split() for line in lines[1:] if line.strip()]
    return [str(root / r[col_path]) for r in rows], [int(r[col_class]) for r in rows]
