"""Your own data as one CSV in Open Metric Learning's dataframe format (``dataset=csv``).

The format (OML's docs, ``docs/source/contents/dataset_format.md``, and its checker
``oml/utils/dataframe_format.py::check_retrieval_dataframe_format``), one row per image:

    label        integer class id
    path         image path, absolute or relative to ``root``
    split        train | validation
    is_query     validation rows: True/False (1/0); empty on train rows     (optional here, see below)
    is_gallery   validation rows: True/False (1/0); empty on train rows
    category     optional: a group of labels (one category per label)
    x_1, x_2, y_1, y_2   optional bounding box: left, right, top, bottom in pixels (0 <= x_1 < x_2,
                 0 <= y_1 < y_2); the image is cropped to it; a row may leave all four empty

The harness's zero-shot protocol on it: OML's ``validation`` rows are the TEST split, the ``train`` rows
train, and the validation classes that select the epoch are carved from the training classes (seeded
``val_fraction`` or explicit ``val_classes``), as for every dataset. Test retrieval is leave-one-out
among the validation rows when every row is both query and gallery (OML's "1 vs rest", SOP / CUB /
Cars) or when the flags are absent; with disjoint query and gallery rows (In-Shop), queries are searched
in the gallery. Train and validation must not share a label, nor an image: a table that lists one image twice
(by the same path, relative or absolute) is refused, in one split (a duplicate row) or across the two (a test
image seen in training). A box must lie inside its image (read from each boxed image's header). Errors name a
class by its CSV label.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from harness.data.base import DMLData
from harness.data.images import READ_ERRORS, build_dml_data, resolve_root
from harness.errors import DataError

log = logging.getLogger(__name__)

REQUIRED = ("label", "path", "split")
FLAGS = ("is_query", "is_gallery")
BOX = ("x_1", "x_2", "y_1", "y_2")
SPLITS = ("train", "validation")
FORMAT = (
    "Open Metric Learning's dataframe format "
    "(columns label, path, split; optional is_query, is_gallery, category, x_1, x_2, y_1, y_2)"
)
TRUE, FALSE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no"}


def load_csv(
    root,
    csv: str = "df.csv",
    val_classes=None,
    val_fraction: float = 0.2,
    seed: int = 0,
    transform: dict | None = None,
    on_corrupt: str = "fail",
    fast_decode: bool = True,
) -> DMLData:
    """``root``: the dataset root (relative image paths are read from it); ``csv``: the table, relative to
    ``root`` or absolute (OML's ``dataset_root`` and ``dataframe_name``)."""
    base = resolve_root(root)
    table = Path(str(csv)).expanduser()
    table = table if table.is_absolute() else base / table
    if not table.is_file():
        where = "does not exist" if not base.exists() else f"has no {csv}"
        raise DataError(
            f"CSV dataset not found: {base} {where}. Expected there: {csv}, a table in {FORMAT}; "
            f"set dataset.root (and dataset.csv)"
        )
    df = read_table(table)
    where = f"dataset.csv={table}"
    paths = [str(p if Path(p).is_absolute() else base / p) for p in df["path"]]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(
            f"{where}: {len(missing)} of {len(paths)} image files are missing (first: {missing[0]}); "
            f"relative paths are read from dataset.root={base}"
        )
    check_repeats(df, paths, where)
    labels = df["label"].to_numpy(np.int64)
    boxes = read_boxes(df, where)
    check_boxes_inside(paths, boxes, where)
    train = (df["split"] == "train").to_numpy()
    shared = sorted(set(labels[train].tolist()) & set(labels[~train].tolist()))
    if shared:
        raise DataError(
            f"{where}: {len(shared)} labels have rows in both splits (first: {shared[0]}); zero-shot "
            f"retrieval tests on unseen classes: give each label rows of one split only"
        )
    query, gallery = read_flags(df, ~train, where)
    names = class_names(df)
    test_classes = sorted(set(labels[~train].tolist()))
    common = dict(
        val_classes=val_classes,
        val_fraction=val_fraction,
        seed=seed,
        transform=transform,
        on_corrupt=on_corrupt,
        fast_decode=fast_decode,
        class_names=names,
    )
    if gallery is None:  # leave-one-out among the validation rows
        return build_dml_data(
            "csv", paths, labels, sorted(set(labels[train].tolist())), test_classes, boxes=boxes, **common
        )
    keep = train | query
    pick = lambda seq, mask: [x for x, m in zip(seq, mask) if m]  # noqa: E731
    return build_dml_data(
        "csv",
        pick(paths, keep),
        labels[keep],
        sorted(set(labels[train].tolist())),
        test_classes,
        boxes=pick(boxes, keep),
        gallery=(pick(paths, gallery), labels[gallery], pick(boxes, gallery)),
        **common,
    )


def files_read(root, csv: str = "df.csv", **_) -> list:
    """(key, path) of every file :func:`load_csv` reads, for the run's identity (harness/rundir/fingerprint.py):
    the table (``dataset.csv``) and each image as its row names it, inside the root or anywhere else."""
    base = resolve_root(root)
    table = Path(str(csv)).expanduser()
    table = table if table.is_absolute() else base / table
    out = [("dataset.csv", table)]
    try:
        listed = pd.read_csv(table, usecols=["path"], dtype=str)["path"].dropna()
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):  # load_csv says what is wrong
        return out
    return out + [(f"dataset.csv:{p}", Path(p) if Path(p).is_absolute() else base / p) for p in listed]


load_csv.files_read = files_read


def read_table(table: Path) -> pd.DataFrame:
    where = f"dataset.csv={table}"
    try:
        df = pd.read_csv(table, index_col=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(
            f"{where} is not a readable CSV ({type(err).__name__}: {str(err).strip()}); expected {FORMAT}"
        ) from None
    lacking = [c for c in REQUIRED if c not in df.columns]
    if lacking:
        raise DataError(
            f"{where} lacks the column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)} "
            f"(it has {', '.join(map(str, df.columns))}); expected {FORMAT}"
        )
    if df[list(REQUIRED)].isna().any().any():
        col = next(c for c in REQUIRED if df[c].isna().any())
        row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
        raise DataError(f"{where}: row {row + 2} has no {col}; every row needs label, path and split")
    df["split"] = df["split"].astype(str).str.strip()
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise DataError(
            f"{where}: split {bad[0]!r} is neither train nor validation ({len(bad)} such values); "
            f"OML's validation rows are the harness's test split"
        )
    for split in SPLITS:
        if not (df["split"] == split).any():
            raise DataError(
                f"{where} has no {split} row; the harness trains on train rows and tests on validation rows"
            )
    numeric = pd.to_numeric(df["label"], errors="coerce")
    if numeric.isna().any() or (numeric != numeric.round()).any():
        row = int(np.flatnonzero((numeric.isna() | (numeric != numeric.round())).to_numpy())[0])
        raise DataError(
            f"{where}: label {df['label'].iloc[row]!r} in row {row + 2} is not an integer; "
            f"OML's labels are integer class ids"
        )
    df["label"] = numeric.astype(np.int64)
    return df


def read_flags(df: pd.DataFrame, val: np.ndarray, where: str):
    """(query mask, gallery mask) over all rows, or (None, None) for leave-one-out among validation rows."""
    present = [c for c in FLAGS if c in df.columns]
    if not present:
        return None, None
    if len(present) == 1:
        raise DataError(
            f"{where} has {present[0]} but not {FLAGS[1 - FLAGS.index(present[0])]}; give both "
            f"(or neither: every validation row is then query and gallery)"
        )
    flags = {}
    for col in FLAGS:
        values = [as_flag(v) for v in df[col]]
        bad = next((i for i in np.flatnonzero(val) if values[i] not in (True, False)), None)
        if bad is not None:
            value = "empty" if values[bad] is None else repr(df[col].iloc[bad])
            raise DataError(
                f"{where}: row {bad + 2} (split validation) has {col} {value}; validation rows need True/False or 1/0"
            )
        flags[col] = np.array([bool(v) and m for v, m in zip(values, val)])
    query, gallery = flags["is_query"], flags["is_gallery"]
    neither = np.flatnonzero(val & ~query & ~gallery)
    if len(neither):
        raise DataError(
            f"{where}: row {neither[0] + 2} is a validation row that is neither query nor gallery "
            f"({len(neither)} such rows); drop them or set a flag"
        )
    labels = df["label"].to_numpy()
    lonely = sorted(set(labels[query].tolist()) - set(labels[gallery].tolist()))
    if lonely:
        raise DataError(
            f"{where}: label {lonely[0]} has queries but no gallery image ({len(lonely)} such labels); "
            f"every query label needs gallery rows"
        )
    both = query & gallery
    if both[val].all():
        return None, None
    if both.any():
        raise DataError(
            f"{where}: {int(both.sum())} validation rows are both query and gallery while others are "
            f"only one; the harness evaluates either every row against the rest (all rows both) or "
            f"disjoint query and gallery rows"
        )
    return query, gallery


def as_flag(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().lower()
    return True if text in TRUE else False if text in FALSE else value


def read_boxes(df: pd.DataFrame, where: str) -> list:
    """Per row: None, or the crop box (left, top, right, bottom) = (x_1, y_1, x_2, y_2)."""
    present = [c for c in BOX if c in df.columns]
    if not present:
        return [None] * len(df)
    if len(present) < len(BOX):
        raise DataError(
            f"{where} has the box column(s) {', '.join(present)} but not "
            f"{', '.join(c for c in BOX if c not in present)}; give all of x_1, x_2, y_1, y_2 or none"
        )
    coords = df[list(BOX)].apply(pd.to_numeric, errors="coerce")
    empty, full = coords.isna().all(axis=1).to_numpy(), coords.notna().all(axis=1).to_numpy()
    partial = np.flatnonzero(~empty & ~full)
    if len(partial):
        raise DataError(
            f"{where}: row {partial[0] + 2} has only part of its box; fill x_1, x_2, y_1, y_2 or leave all empty"
        )
    x1, x2, y1, y2 = (coords[c].to_numpy() for c in BOX)
    invalid = np.flatnonzero(full & ~((x1 >= 0) & (y1 >= 0) & (x1 < x2) & (y1 < y2)))
    if len(invalid):
        r = invalid[0]
        raise DataError(
            f"{where}: row {r + 2} has the box x_1={x1[r]:g}, x_2={x2[r]:g}, y_1={y1[r]:g}, y_2={y2[r]:g}; "
            f"need 0 <= x_1 < x_2 and 0 <= y_1 < y_2 (left, right, top, bottom)"
        )
    return [(float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i])) if full[i] else None for i in range(len(df))]


def check_repeats(df: pd.DataFrame, paths: list, where: str) -> None:
    """Each image once: a repeated row weighs an image twice; the same image in both splits leaks the test split."""
    same = pd.Series([os.path.normpath(p) for p in paths])
    repeated = np.flatnonzero(same.duplicated().to_numpy())
    if not len(repeated):
        return
    splits = df["split"].to_numpy()
    leaks = [i for i in repeated if (splits[same == same[i]] != splits[i]).any()]
    i = (leaks or repeated)[0]
    first = int(np.flatnonzero((same == same[i]).to_numpy())[0])
    if leaks:
        raise DataError(
            f"{where}: rows {first + 2} and {i + 2} list the same image {paths[i]} in the train and validation splits "
            f"({len(leaks)} such rows): a test image seen in training; give each image one split"
        )
    raise DataError(
        f"{where}: row {i + 2} repeats the image of row {first + 2} ({paths[i]}; {len(repeated)} repeated rows); "
        f"drop the duplicates"
    )


def check_boxes_inside(paths: list, boxes: list, where: str) -> None:
    """A box reaches no further than its image (a crop beyond it would be padded with black, silently)."""
    for i, box in enumerate(boxes):
        if box is None:
            continue
        try:
            with Image.open(paths[i]) as img:  # the header only: the size, no pixels decoded
                width, height = img.size
        except READ_ERRORS:
            continue  # an unreadable image: on_corrupt decides when it is read
        left, top, right, bottom = box
        if right > width or bottom > height:
            raise DataError(
                f"{where}: row {i + 2} has the box x_1={left:g}, x_2={right:g}, y_1={top:g}, y_2={bottom:g} beyond "
                f"its image {paths[i]} ({width} x {height} pixels); boxes are in pixels of the full image: fix the row"
            )


def class_names(df: pd.DataFrame) -> dict:
    """``{label: "category/label"}`` where the optional ``category`` column is given, else ``{label: "label"}``."""
    labels = df["label"].to_numpy()
    if "category" not in df.columns:
        return {int(c): str(c) for c in np.unique(labels)}
    categories = df.groupby("label")["category"].agg(lambda s: sorted(set(map(str, s.dropna()))))
    mixed = [int(c) for c, cats in categories.items() if len(cats) > 1]
    if mixed:
        raise DataError(
            f"label {mixed[0]} has rows of several categories ({', '.join(categories[mixed[0]])}); "
            f"a category groups whole labels"
        )
    return {int(c): f"{cats[0]}/{c}" if cats else str(c) for c, cats in categories.items()}
