"""Image datasets read from files: the shared machinery of the CUB, Cars, SOP, In-Shop and folder loaders.

A loader parses its dataset's metadata into image paths and integer class ids, then calls
:func:`build_dml_data`, which applies the zero-shot protocol every loader shares:

    train classes -> carve a class-disjoint validation set (explicit list or seeded fraction)
    train labels remapped to 0..C-1; validation and test keep the dataset's own class ids
    train split: random resized crop + flip; validation / test: resize + centre crop (conf ``transform``)

Images are decoded on read by :class:`ImageListDataset`. A corrupt or unreadable image is reported by
its path: ``on_corrupt: fail`` stops with a DataError naming the file, ``skip`` logs it once and serves
another image of the same class instead (so batches keep their shape and the sampler its classes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from harness.data.base import DMLData, EvalSet, remap_labels
from harness.data.splits import carve_validation, check_disjoint, expand_classes
from harness.data.transforms import build_eval_transform, build_train_transform
from harness.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ON_CORRUPT = ("fail", "skip")
# what PIL raises on a truncated, corrupt or missing file (UnidentifiedImageError is an OSError)
READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class CorruptImageError(DataError):
    """A corrupt image, by path. Raised in a DataLoader worker, torch re-raises it in the main process as
    ``type(err)(traceback text)``: keep only the message, so the user still reads one line."""

    def __init__(self, message: str):
        if "Original Traceback" in message:
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


class ImageListDataset(Dataset):
    """Images given by path, with integer ``labels``; each read decodes one file and applies ``transform``.

    ``draft_size`` lets PIL decode a JPEG at a reduced scale (1/2, 1/4, 1/8) when that still leaves
    both sides at least ``draft_size`` pixels: the cheapest speed-up of low-resolution runs.
    """

    def __init__(
        self, paths, labels, transform=None, on_corrupt: str = "fail", draft_size: int | None = None, boxes=None
    ):
        if on_corrupt not in ON_CORRUPT:
            raise ConfigError(f"dataset.on_corrupt={on_corrupt!r} must be one of {', '.join(ON_CORRUPT)}")
        if len(paths) != len(labels) or (boxes is not None and len(boxes) != len(paths)):
            raise ValueError(f"{len(paths)} paths, {len(labels)} labels and {len(boxes or [])} boxes")
        self.paths = [str(p) for p in paths]
        # per image: None or a crop box (left, top, right, bottom) in pixels of the full image
        self.boxes = list(boxes) if boxes is not None else None
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.on_corrupt = on_corrupt
        self.draft_size = draft_size
        self.class_ids = None  # training splits: the dataset's own id of each label 0..C-1 (errors name that)
        self._same_class = None  # built on the first corrupt image only
        self._reported = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        img = self.read(i)
        return (self.transform(img) if self.transform is not None else img), int(self.labels[i])

    def read(self, i: int) -> Image.Image:
        try:
            return self.load(i)
        except READ_ERRORS as err:
            return self.replace_corrupt(i, err)

    def load(self, i: int) -> Image.Image:
        """Image ``i``, cropped to its box when it has one."""
        box = self.boxes[i] if self.boxes is not None else None
        img = self.decode(self.paths[i], draft=box is None)  # a box is in full-resolution pixels
        return img.crop(tuple(box)) if box is not None else img

    def decode(self, path: str, draft: bool = True) -> Image.Image:
        img = Image.open(path)
        if draft and self.draft_size and img.format == "JPEG":
            img.draft(None, (self.draft_size, self.draft_size))
        img.load()  # decodes now (a truncated file fails here, by path) and closes the file
        return img

    def replace_corrupt(self, i: int, err: Exception) -> Image.Image:
        path = self.paths[i]
        if self.on_corrupt == "fail":
            raise CorruptImageError(
                f"corrupt or unreadable image {path} ({type(err).__name__}: {err}); "
                f"replace or delete the file, or set dataset.on_corrupt=skip"
            )
        if i not in self._reported:
            self._reported.add(i)
            log.warning(
                "corrupt image skipped, another image of its class served instead: %s (%s: %s)",
                path,
                type(err).__name__,
                err,
            )
        if self._same_class is None:
            self._same_class = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        others = self._same_class[int(self.labels[i])]
        start = int(np.searchsorted(others, i))
        for j in np.roll(others, -start)[1:]:
            try:
                return self.load(j)
            except READ_ERRORS:
                continue
        label = int(self.labels[i])
        name = self.class_ids[label] if self.class_ids is not None else label
        raise DataError(f"every image of class {name} is unreadable (first: {path}); check the dataset files")


class ImagePreprocess:
    """What an evaluation split does to one image, for a reloaded run (``load_run(...).embed``): a path is decoded
    as :class:`ImageListDataset` decodes its files (JPEG draft at ``draft_size``), then ``transform`` applies;
    a PIL image (or an H x W [x C] uint8 array) is transformed as it is."""

    def __init__(self, transform, draft_size: int | None = None):
        self.transform, self.draft_size = transform, draft_size

    def __call__(self, x):
        if isinstance(x, (str, Path)):
            return ImageListDataset([x], [0], self.transform, draft_size=self.draft_size)[0][0]
        if isinstance(x, np.ndarray):
            x = Image.fromarray(x)
        return self.transform(x)


def eval_preprocess(transform: dict | None = None, fast_decode: bool = True, **_) -> ImagePreprocess:
    """The test split's preprocessing of an image loader (:func:`build_dml_data`'s), from its config values."""
    transform = dict(transform or {})
    draft = int(transform.get("resize", 256)) if fast_decode else None
    return ImagePreprocess(build_eval_transform(**transform), draft)


# ----------------------------------------------------------------------------------------------- roots
def resolve_root(root) -> Path:
    """A dataset root; a relative one is taken relative to the repository (where conf/ lives)."""
    if root in (None, "", "???"):
        raise ConfigError("dataset.root is not set; set dataset.root=/path/to/the/dataset")
    path = Path(str(root)).expanduser()
    return path if path.is_absolute() else (REPO / path).resolve()


def require_files(root: Path, names, dataset: str, layout: str, source: str) -> None:
    """Fail at start-up, naming the path, the layout expected there and where the dataset is published."""
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        where = "does not exist" if not root.exists() else f"lacks {', '.join(missing)}"
        raise DataError(
            f"{dataset} not found: {root} {where}. Expected there: {layout}. "
            f"Download it from {source} and set dataset.root (or paths.data)"
        )


def require_images(paths, dataset: str, root: Path, source: str) -> None:
    """Every listed image must exist: an incomplete copy fails now, not mid-epoch."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(
            f"{dataset} at {root} is incomplete: {len(missing)} of {len(paths)} listed images are "
            f"missing (first: {missing[0]}); re-extract the archive from {source}"
        )


# ----------------------------------------------------------------------------------------------- the protocol
def build_dml_data(
    name: str,
    paths,
    class_ids,
    train_classes,
    test_classes,
    *,
    val_classes=None,
    val_fraction: float = 0.0,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    fast_decode: bool = True,
    class_names: dict | None = None,
    gallery=None,
    boxes=None,
) -> DMLData:
    """Zero-shot splits of an image list by class id.

    ``train_classes`` / ``test_classes`` / ``val_classes``: lists of class ids or ``{first, last}`` ranges.
    ``gallery``: optional ``(paths, class_ids[, boxes])`` searched by the test queries (In-Shop); test queries
    are then the images of ``test_classes`` in ``paths``. ``boxes``: optional per-image crop boxes
    ``(left, top, right, bottom)`` or None, aligned with ``paths``.
    """
    paths = np.asarray([str(p) for p in paths], dtype=object)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    box_list = np.empty(len(paths), dtype=object)
    box_list[:] = list(boxes) if boxes is not None else [None] * len(paths)
    present = set(np.unique(class_ids).tolist())
    train_c = [c for c in expand_classes(train_classes) if c in present]
    test_c = [c for c in expand_classes(test_classes) if c in present]
    report_absent(name, "train", train_classes, train_c)
    report_absent(name, "test", test_classes, test_c)
    train_c, val_c = carve_validation(train_c, val_classes, val_fraction, seed)
    check_disjoint(train=train_c, val=val_c, test=test_c)
    if len(train_c) < 2:
        raise ConfigError(
            f"{name}: {len(train_c)} training classes after carving validation; "
            f"lower dataset.val_fraction or widen dataset.train_classes"
        )
    if not test_c:
        raise ConfigError(
            f"{name}: no image of dataset.test_classes={test_classes} under the root; fix the class range"
        )

    transform = dict(transform or {})
    train_tf, eval_tf = build_train_transform(**transform), build_eval_transform(**transform)
    draft = int(transform.get("resize", 256)) if fast_decode else None

    def split(classes, tf, remap=False):
        mask = np.isin(class_ids, classes)
        labels = remap_labels(class_ids[mask])[0] if remap else class_ids[mask]
        dataset = ImageListDataset(
            paths[mask].tolist(),
            labels,
            tf,
            on_corrupt,
            draft,
            boxes=box_list[mask].tolist() if boxes is not None else None,
        )
        if remap:
            dataset.class_ids = np.unique(class_ids[mask])  # label c trains as c's rank: errors name the class id
        return dataset

    if gallery is not None:
        g_paths, g_ids, *g_boxes = gallery
        test = EvalSet(
            split(test_c, eval_tf),
            ImageListDataset(list(g_paths), g_ids, eval_tf, on_corrupt, draft, boxes=g_boxes[0] if g_boxes else None),
        )
    else:
        test = EvalSet(split(test_c, eval_tf))
    data = DMLData(
        name=name,
        train=split(train_c, train_tf, remap=True),
        val=EvalSet(split(val_c, eval_tf)) if val_c else None,
        test=test,
        class_names=class_names or {},
        eval_transform=eval_tf,
    )
    log.info(
        "%s: train %d images / %d classes, val %d / %d, test %d / %d%s",
        name,
        len(data.train),
        len(train_c),
        len(data.val.query) if data.val else 0,
        len(val_c),
        len(test.query),
        len(test_c),
        f", gallery {len(test.gallery)}" if test.gallery is not None else "",
    )
    return data


def report_absent(name: str, split: str, spec, found: list) -> None:
    wanted = expand_classes(spec)
    if len(found) < len(wanted):
        log.warning(
            "%s: %d of the %d %s classes requested have no image under the root",
            name,
            len(wanted) - len(found),
            len(wanted),
            split,
        )
