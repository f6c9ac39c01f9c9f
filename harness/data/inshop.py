"""In-Shop Clothes Retrieval (DeepFashion, Liu et al., CVPR 2016): 52,712 images of 7,982 items.

Layout of the release, which ``root`` points at (``Eval/`` and ``Img/`` sub-folders are also found):

    list_eval_partition.txt   line 1: count; line 2: "image_name item_id evaluation_status";
                              then "img/<...>/id_XXXXXXXX/<file>.jpg id_XXXXXXXX train|query|gallery"
    img/...                   the images (Img/img.zip of the release)

Protocol: train on the 3,997 training items (25,882 images); test by searching the 14,218 query
images in the 12,612 gallery images (3,985 items; a query never searches its own set),
Recall@1, 10, 20, 30, 40, 50 (conf/dataset/inshop.yaml sets eval.k).
"""

from __future__ import annotations

from harness.data.base import DMLData
from harness.data.images import build_dml_data, require_images, resolve_root
from harness.errors import DataError

SOURCE = (
    "the DeepFashion In-shop Clothes Retrieval Benchmark (https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/"
    "InShopRetrieval.html: Eval/list_eval_partition.txt and Img/img.zip)"
)
LAYOUT = "list_eval_partition.txt (train / query / gallery) and img/"
PARTITION = "list_eval_partition.txt"


def load_inshop(
    root,
    val_classes=None,
    val_fraction: float = 0.1,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    fast_decode: bool = True,
) -> DMLData:
    root = resolve_root(root)
    partition = next((p for p in (root / PARTITION, root / "Eval" / PARTITION) if p.exists()), None)
    if partition is None:
        where = "does not exist" if not root.exists() else f"has no {PARTITION} (nor Eval/{PARTITION})"
        raise DataError(
            f"In-Shop not found: {root} {where}. Expected there: {LAYOUT}. "
            f"Download it from {SOURCE} and set dataset.root (or paths.data)"
        )
    image_root = root / "Img" if (root / "Img" / "img").is_dir() and not (root / "img").is_dir() else root
    splits = read_partition(partition, image_root)
    require_images([p for ps, _ in splits.values() for p in ps], "In-Shop", root, SOURCE)
    (train_p, train_ids), (query_p, query_ids) = splits["train"], splits["query"]
    return build_dml_data(
        "inshop",
        train_p + query_p,
        train_ids + query_ids,
        sorted(set(train_ids)),
        sorted(set(query_ids)),
        val_classes=val_classes,
        val_fraction=val_fraction,
        seed=seed,
        transform=transform,
        on_corrupt=on_corrupt,
        fast_decode=fast_decode,
        gallery=splits["gallery"],
    )


def read_partition(path, image_root) -> dict:
    """``{train|query|gallery: (paths, item ids)}`` from ``list_eval_partition.txt``."""
    lines = path.read_text().splitlines()
    if len(lines) < 2 or lines[1].split() != ["image_name", "item_id", "evaluation_status"]:
        raise DataError(
            f"{path} does not have the header 'image_name item_id evaluation_status' on line 2; "
            f"re-download it from {SOURCE}"
        )
    splits = {"train": ([], []), "query": ([], []), "gallery": ([], [])}
    for line in lines[2:]:
        if not line.strip():
            continue
        name, item, status = line.split()
        if status not in splits:
            raise DataError(f"{path}: unknown evaluation_status {status!r} (expected train, query or gallery)")
        splits[status][0].append(str(image_root / name))
        splits[status][1].append(int(item.removeprefix("id_")))
    empty = [s for s, (p, _) in splits.items() if not p]
    if empty:
        raise DataError(f"{path} lists no {empty[0]} image; re-download it from {SOURCE}")
    return splits
