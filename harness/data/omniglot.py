"""Omniglot (Lake et al., Science 2015): 105x105 binary handwritten characters, 20 drawings each.

``root`` holds subsets in the release layout, each as a zip file or an extracted folder:

    <subset>.zip  or  <subset>/     containing  <subset>/<Alphabet>/characterNN/<drawer>_<nn>.png

A class is one character of one alphabet. Two protocols:

* ``dataset=omniglot`` (default, the two small zips): train on ``images_background_small1`` (5 alphabets,
  136 characters), test on ``images_background_small2``, alphabet-disjoint. Both small subsets contain
  the Greek and Latin alphabets, with byte-identical images, so the alphabets of the training subsets
  are removed from the test subsets (test: Japanese (katakana), Sanskrit and Tagalog, 106 characters,
  2,120 images); a run that tested on them would be scored on its own training images.
* ``dataset=omniglot_standard``: Lake et al.'s background / evaluation split, ``images_background``
  (30 alphabets, 964 characters) for training and ``images_evaluation`` (20 alphabets, 659 characters)
  for test.

``train_subsets`` / ``test_subsets`` list one or more subsets each; the same character in several
training subsets (Greek and Latin in both small zips) is one class, its duplicate files read once.
Validation characters are carved from the training characters: a seeded ``val_fraction`` of them, the
class ids ``val_classes``, or every character of the alphabets ``val_alphabets`` (alphabet-disjoint from
training, as the test split is).

All images are decoded once, at the configured resolution, into memory: a CPU epoch then costs only
the network. The test-time transform (grayscale, inverted so strokes are 1, resized) is the only
preprocessing; train-time augmentation is the config's ``dataset.augment``
(:class:`~harness.data.augment.BatchAugment`, built by harness.training.build and applied per batch on the training
device by the loop; ``null``: off).
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.data.base import ArrayDataset, DMLData, EvalSet, remap_labels
from harness.data.images import READ_ERRORS, ImagePreprocess, resolve_root
from harness.data.splits import carve_validation, check_disjoint
from harness.data.transforms import build_eval_transform
from harness.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SOURCE = (
    "https://github.com/brendenlake/omniglot (python/: images_background_small1.zip, images_background_small2.zip; "
    "images_background.zip, images_evaluation.zip)"
)
DEFAULT_TRANSFORM = {"size": 28, "resize": 28, "normalize": "none", "mode": "L", "invert": True}


def load_omniglot(
    root,
    train_subsets=("images_background_small1",),
    test_subsets=("images_background_small2",),
    val_classes=None,
    val_fraction: float = 0.2,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    val_alphabets=None,
    rotated_classes: int = 1,
    mirrored_classes: bool = False,
    on_device="auto",
) -> DMLData:
    root = resolve_root(root)
    train_subsets, test_subsets = subset_list(train_subsets, "train"), subset_list(test_subsets, "test")
    transform = {**DEFAULT_TRANSFORM, **(transform or {})}
    eval_tf = build_eval_transform(**transform)
    train_items = list_subsets(root, train_subsets)
    train_alphabets = {key.split("/")[0] for key, _ in train_items}
    all_test = list_subsets(root, test_subsets)
    test_items = [(k, f) for k, f in all_test if k.split("/")[0] not in train_alphabets]
    dropped = sorted({k.split("/")[0] for k, _ in all_test} & train_alphabets)
    if dropped:
        log.info(
            "omniglot: alphabets %s are in both %s and %s; tested on the other alphabets only",
            ", ".join(dropped),
            "+".join(train_subsets),
            "+".join(test_subsets),
        )
    if not test_items:
        raise ConfigError(
            f"omniglot: every alphabet of {'+'.join(test_subsets)} is also in {'+'.join(train_subsets)}; "
            f"choose other dataset.test_subsets"
        )

    keys = sorted({k for k, _ in train_items}) + sorted({k for k, _ in test_items})
    class_id = {k: i for i, k in enumerate(keys)}
    train_keys = sorted({class_id[k] for k, _ in train_items})
    test_keys = sorted({class_id[k] for k, _ in test_items})
    if val_alphabets:
        val_classes = alphabet_classes(val_alphabets, train_items, class_id, "+".join(train_subsets))
    train_c, val_c = carve_validation(train_keys, val_classes, val_fraction, seed)
    check_disjoint(train=train_c, val=val_c, test=test_keys)

    x_train, y_train = decode_all(train_items, class_id, eval_tf, on_corrupt)
    x_test, y_test = decode_all(test_items, class_id, eval_tf, on_corrupt)

    def subset(x, y, classes, remap=False):
        mask = np.isin(y, classes)
        labels = remap_labels(y[mask])[0] if remap else y[mask]
        return ArrayDataset(x[torch.from_numpy(mask)], labels)

    log.info(
        "omniglot: train %d characters, val %d, test %d (%s -> %s)",
        len(train_c),
        len(val_c),
        len(test_keys),
        "+".join(train_subsets),
        "+".join(test_subsets),
    )
    train = subset(x_train, y_train, train_c, remap=True)
    if int(rotated_classes) > 1 or mirrored_classes:
        train = with_transformed_classes(train, int(rotated_classes), bool(mirrored_classes))
    return DMLData(
        name="omniglot",
        train=train,
        val=EvalSet(subset(x_train, y_train, val_c)) if val_c else None,
        test=EvalSet(ArrayDataset(x_test, y_test)),
        class_names={i: k for k, i in class_id.items()},
        eval_transform=eval_tf,
        on_device=on_device,
    )


def eval_preprocess(transform: dict | None = None, **_) -> ImagePreprocess:
    """What :func:`load_omniglot` does to a raw image before the network sees it (for ``load_run``)."""
    return ImagePreprocess(build_eval_transform(**{**DEFAULT_TRANSFORM, **(transform or {})}))


load_omniglot.eval_preprocess = eval_preprocess


def alphabet_classes(alphabets, items, class_id: dict, where: str) -> list:
    """The class ids of every character of ``alphabets`` among the training items."""
    alphabets = [alphabets] if isinstance(alphabets, str) else list(alphabets)
    present = sorted({k.split("/")[0] for k, _ in items})
    unknown = [a for a in alphabets if a not in present]
    if unknown:
        raise ConfigError(
            f"dataset.val_alphabets: {unknown[0]!r} is not an alphabet of {where} (they are {', '.join(present)})"
        )
    return sorted({class_id[k] for k, _ in items if k.split("/")[0] in alphabets})


def with_transformed_classes(train: ArrayDataset, turns: int, mirrored: bool) -> ArrayDataset:
    """The training split plus each character turned by 90, 180, 270 degrees (``turns`` = 2, 3, 4 in all) and,
    when ``mirrored``, each of those mirrored left-right, every transform a class of its own: Omniglot's class
    augmentation (Santoro et al. 2016; Vinyals et al. 2016; Snell et al. 2017 train prototypical networks on
    4 x 964 rotated classes). Validation and test are untouched."""
    if not 1 <= turns <= 4:
        raise ConfigError(f"dataset.rotated_classes={turns} must be 1 (off) to 4 (0, 90, 180 and 270 degrees)")
    n = int(train.labels.max()) + 1
    views = [torch.rot90(train.inputs, turn, dims=(2, 3)) for turn in range(turns)]
    if mirrored:
        views += [torch.flip(v, dims=(3,)) for v in views]
    labels = np.concatenate([train.labels + i * n for i in range(len(views))])
    return ArrayDataset(torch.cat(views), labels)


def subset_list(subsets, split: str) -> list:
    names = [subsets] if isinstance(subsets, str) else list(subsets or [])
    if not names:
        raise ConfigError(
            f"dataset.{split}_subsets is empty; list at least one, e.g. dataset.{split}_subsets=[images_background]"
        )
    return names


def list_subsets(root: Path, subsets: list) -> list:
    """The PNGs of several subsets; a file present in several (same Alphabet/characterNN/name) is read once."""
    seen, items = set(), []
    for subset in subsets:
        for key, source in list_subset(root, subset):
            name = f"{key}/{source[1].rsplit('/', 1)[-1] if isinstance(source, tuple) else source.name}"
            if name not in seen:
                seen.add(name)
                items.append((key, source))
    return items


def list_subset(root: Path, subset: str) -> list:
    """``[("Alphabet/characterNN", source), ...]`` for the PNGs of a subset, from its zip or its folder.

    ``source`` is ``(zip path, member name)`` or a file path.
    """
    archive, folder = root / f"{subset}.zip", root / subset
    items = []
    if folder.is_dir():
        base = folder / subset if (folder / subset).is_dir() else folder  # a zip extracted into its own name
        items = [(f"{p.parent.parent.name}/{p.parent.name}", p) for p in sorted(base.glob("*/*/*.png"))]
    elif archive.is_file():
        try:
            with zipfile.ZipFile(archive) as zf:
                names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
        except zipfile.BadZipFile as err:
            raise DataError(f"{archive} is not a readable zip file ({err}); download it again from {SOURCE}") from None
        for n in names:
            parts = n.split("/")
            if len(parts) >= 3:
                items.append((f"{parts[-3]}/{parts[-2]}", (archive, n)))
    if not items:
        where = "does not exist" if not root.exists() else f"has neither {subset}.zip nor {subset}/ with PNG images"
        raise DataError(
            f"Omniglot not found: {root} {where}. Expected there: {subset}.zip or {subset}/ laid out as "
            f"<Alphabet>/characterNN/*.png. Download it from {SOURCE} and set dataset.root "
            f"(or paths.data)"
        )
    return items


def decode_all(items, class_id: dict, transform, on_corrupt: str) -> tuple:
    """Decode and transform every image once: (N x C x H x W float tensor, class ids)."""
    if on_corrupt not in ("fail", "skip"):
        raise ConfigError(f"dataset.on_corrupt={on_corrupt!r} must be fail or skip")
    images, labels, archives = [], [], {}
    try:
        for key, source in items:
            try:
                if isinstance(source, tuple):
                    zf = archives.get(source[0]) or archives.setdefault(source[0], zipfile.ZipFile(source[0]))
                    img = Image.open(io.BytesIO(zf.read(source[1])))
                else:
                    img = Image.open(source)
                img.load()
            except (*READ_ERRORS, zipfile.BadZipFile) as err:
                where = f"{source[0]}!{source[1]}" if isinstance(source, tuple) else str(source)
                if on_corrupt == "fail":
                    raise DataError(
                        f"corrupt or unreadable image {where} ({type(err).__name__}: {err}); "
                        f"replace the file or set dataset.on_corrupt=skip"
                    ) from None
                log.warning("corrupt image skipped: %s (%s: %s)", where, type(err).__name__, err)
                continue
            images.append(transform(img))
            labels.append(class_id[key])
    finally:
        for zf in archives.values():
            zf.close()
    return torch.stack(images), np.asarray(labels, dtype=np.int64)
