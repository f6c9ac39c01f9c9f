"""dataset=csv: a generated image tree and a table in Open Metric Learning's dataframe format.

The table is written as OML's docs and checker describe it (label, path, split in {train, validation},
is_query / is_gallery empty on train rows, optional category and x_1, x_2, y_1, y_2 boxes), loaded through
conf/dataset/csv.yaml; OML's validation rows become the test split and validation classes are carved from
the train labels. Every malformed table fails with one line naming the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose_cfg
from test_datasets import OML_TEST, OML_TRAIN, SMALL, classes_of, load, make_oml

from harness.errors import DataError
from harness.training.task import run

TRAIN, TEST = OML_TRAIN, OML_TEST


def edit(root, df, change) -> None:
    df = df.copy().astype(object)
    change(df)
    df.to_csv(root / "df.csv", index=False)


def setv(where, column, value):
    """A change to a table: ``column`` of the rows ``where`` (an index or a mask function) set to ``value``."""
    return lambda df: df.loc.__setitem__((where(df) if callable(where) else where, column), value)


def drop(column):
    return lambda df: df.drop(columns=[column], inplace=True)


def test_one_vs_rest_validation_is_the_test_split(tmp_path):
    root, _ = make_oml(tmp_path / "oml")
    data = load("csv", root, "dataset.val_fraction=0.34")
    assert data.name == "csv" and data.num_classes == 4 and data.val.num_classes == 2
    assert classes_of(data.test.query) == set(TEST) and data.test.gallery is None  # every image against the rest
    assert not classes_of(data.val.query) & set(TEST) and classes_of(data.val.query) < set(TRAIN)
    assert sorted(classes_of(data.train)) == [0, 1, 2, 3]
    assert len(data.train) == 16 and len(data.test.query) == 12
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 4
    assert data.class_names[10] == "bags/10" and data.class_names[11] == "shoes/11"
    explicit = load("csv", root, "dataset.val_classes=[5,6]")
    assert classes_of(explicit.val.query) == {5, 6} and explicit.num_classes == 4


def test_disjoint_query_and_gallery_rows(tmp_path):
    root, _ = make_oml(tmp_path / "oml", flags="split", absolute=True)
    data = load("csv", root, "dataset.val_fraction=0.34")
    q, g = data.test.query, data.test.gallery
    assert len(q) == len(g) == 6 and classes_of(q) == classes_of(g) == set(TEST)
    assert not set(q.paths) & set(g.paths)
    assert all(p.endswith(("0.jpg", "1.jpg")) for p in q.paths)


def test_without_flag_columns_every_validation_image_is_a_query(tmp_path):
    root, _ = make_oml(tmp_path / "oml", flags="none")
    data = load("csv", root, "dataset.val_fraction=0.34")
    assert data.test.gallery is None and len(data.test.query) == 12


def test_bounding_boxes_crop_and_empty_boxes_keep_the_image(tmp_path):
    root, _ = make_oml(tmp_path / "oml", boxes=True)
    data = load("csv", root, "dataset.val_fraction=0.34")
    sizes = {p.rsplit("/", 1)[-1]: data.train.read(i).size for i, p in enumerate(data.train.paths)}
    assert sizes["0.jpg"] == sizes["2.jpg"] == (40, 30)  # x_2 - x_1, y_2 - y_1
    assert sizes["1.jpg"] == sizes["3.jpg"] == (80, 60)  # no box: the whole image
    assert data.test.query.boxes[0] == (10.0, 5.0, 50.0, 35.0)


@pytest.mark.parametrize(
    "change, message",
    [
        (drop("split"), "lacks the column split"),
        (setv(0, "label", 10), "labels have rows in both splits (first: 10)"),
        (setv(0, "split", "test"), "split 'test' is neither train nor validation"),
        (setv(0, "label", "cat"), "label 'cat' in row 2 is not an integer"),
        (setv(0, "path", "images/1/missing.jpg"), "1 of 36 image files are missing"),
        (setv(30, "is_gallery", False), "are both query and gallery while others"),
        (setv(30, "is_gallery", "maybe"), "row 32 (split validation) has is_gallery 'maybe'"),
        (setv(lambda df: df.label == 12, "is_gallery", False), "label 12 has queries but no gallery"),
        (setv(30, "is_query", None), "row 32 (split validation) has is_query empty"),
        (drop("is_gallery"), "has is_query but not is_gallery"),
        (drop("y_2"), "but not y_2"),
        (setv(0, "x_2", 5), "row 2 has the box x_1=10, x_2=5"),
        (setv(1, "x_1", 3), "row 3 has only part of its box"),
        (setv(lambda df: df.split == "validation", "split", "train"), "has no validation row"),
        (setv(lambda df: df.label == 3, "category", ["a", "b", "a", "b"]), "label 3 has rows of several categories"),
    ],
)
def test_malformed_table_fails_with_one_line(tmp_path, change, message):
    root, df = make_oml(tmp_path / "oml", boxes=True)
    edit(root, df, change)
    with pytest.raises(DataError) as err:
        load("csv", root)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_table_names_root_and_format(tmp_path):
    with pytest.raises(DataError, match="has no other.csv. Expected there: other.csv, a table in Open Metric"):
        load("csv", tmp_path, "dataset.csv=other.csv")


def test_one_epoch_small_cnn_on_a_csv_table(tmp_path, results):
    root, _ = make_oml(tmp_path / "oml", flags="split", per_class=6)
    cfg = compose_cfg(
        [
            "dataset=csv",
            f"dataset.root={root}",
            *SMALL,
            "dataset.val_fraction=0.34",
            "backbone=small_cnn",
            "backbone.width=8",
            "head.embed_dim=16",
            "sampler.m=3",
            "sampler.batch_size=12",
            "trainer.epochs=1",
            "trainer.progress=false",
        ],
        results,
    )
    record = run(cfg)
    assert record["status"] == "finished" and record["dataset"] == "csv"
    assert 0.0 <= record["test/map@r"] <= 1.0 and np.isfinite(record["val/map@r"])
