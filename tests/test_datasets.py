"""Image dataset loaders on tiny trees written in exactly each release's layout.

Each test writes a few classes of a few small JPEGs with the release's metadata files (CUB's
images.txt, Cars' cars_annos.mat through scipy.io.savemat, SOP's Ebay_*.txt, In-Shop's
list_eval_partition.txt, Omniglot's zips), loads them through the dataset's own config file, and checks
split sizes, labels and class-disjointness; missing roots, incomplete copies and corrupt images fail
with the path named. One 1-epoch run trains timm's ResNet-18 at 32 px on a CUB tree. Every paper preset
(conf/experiment/) composes and builds its loss, regularizers and optimizer.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CONF, compose_cfg, group_options, paper_presets
from omegaconf import open_dict
from PIL import Image

from harness.errors import ConfigError, DataError
from harness.training.build import build_data, instantiate  # instantiate re-raises our one-line errors
from harness.training.task import run

SMALL = ["dataset.transform.size=32", "dataset.transform.resize=36"]


def write_jpeg(path, class_id: int, k: int, size=(80, 60)) -> None:
    """A small JPEG whose colour depends on its class (so a network can tell classes apart)."""
    rng = np.random.default_rng([class_id, k])
    base = np.array([(class_id * 53) % 256, (class_id * 97) % 256, (class_id * 151) % 256], np.float64)
    pixels = np.clip(base + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=85)


def make_cub(root, classes=(1, 2, 3, 4, 5, 6, 101, 102, 103), per_class=4):
    """CUB_200_2011/: images.txt, image_class_labels.txt, images/NNN.Name/*.jpg."""
    images, labels, i = [], [], 0
    for c in classes:
        for k in range(per_class):
            i += 1
            rel = f"{c:03d}.Bird_{c}/Bird_{c}_{k:04d}_{i}.jpg"
            write_jpeg(root / "images" / rel, c, k)
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    return root


def make_cars_official(root, classes=(1, 2, 3, 4, 5, 99, 100, 101), per_class=3):
    """cars_annos.mat (annotations struct array + class_names cell) and car_ims/NNNNNN.jpg."""
    from scipy.io import savemat

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    rows = [(c, k) for c in classes for k in range(per_class)]
    ann = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (c, k) in enumerate(rows):
        rel = f"car_ims/{i + 1:06d}.jpg"
        write_jpeg(root / rel, c, k)
        ann[0, i] = (
            np.array([rel]),
            np.array([[1]], np.uint8),
            np.array([[2]], np.uint8),
            np.array([[70]], np.uint8),
            np.array([[50]], np.uint8),
            np.array([[c]], np.uint8),
            np.array([[k % 2]], np.uint8),
        )
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Make Model {j} 2012" for j in range(1, 197)]
    savemat(root / "cars_annos.mat", {"annotations": ann, "class_names": names})
    return root


def make_sop(root, train=(1, 2, 3, 4, 5, 6), test=(11319, 11320, 11321), per_class=3):
    """Ebay_train.txt / Ebay_test.txt with their header, images under <category>_final/."""
    i = 0
    for name, classes in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = ["image_id class_id super_class_id path"]
        for c in classes:
            for k in range(per_class):
                i += 1
                rel = f"bicycle_final/{111085122000 + c}_{k}.JPG"
                write_jpeg(root / rel, c, k)
                lines.append(f"{i} {c} 1 {rel}")
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def make_inshop(root, train=(1, 2, 3, 4, 5, 6), test=(7, 8, 9)):
    """list_eval_partition.txt (count, header, rows) and img/WOMEN/<category>/id_XXXXXXXX/*.jpg."""
    rows = []
    for item in train:
        rows += [(item, f"0{k}_1_front.jpg", "train") for k in range(1, 4)]
    for item in test:
        rows += [
            (item, "01_1_front.jpg", "query"),
            (item, "02_2_side.jpg", "query"),
            (item, "03_3_back.jpg", "gallery"),
            (item, "04_4_full.jpg", "gallery"),
        ]
    lines = [str(len(rows)), "image_name item_id evaluation_status"]
    for k, (item, fname, status) in enumerate(rows):
        rel = f"img/WOMEN/Dresses/id_{item:08d}/{fname}"
        write_jpeg(root / rel, item, k)
        lines.append(f"{rel:<60} id_{item:08d} {status}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def make_folder_tree(root, names=("apple", "bear", "car", "dog", "egg", "fig", "goat", "hat"), per_class=3):
    for j, name in enumerate(names):
        for k in range(per_class):
            write_jpeg(root / name / f"{k}.jpg", j + 1, k)
    return root


def make_omniglot_zip(root, subset: str, alphabets: dict, per_class=4):
    """<subset>.zip holding <subset>/<Alphabet>/characterNN/<drawer>_<nn>.png (105x105, 1-bit)."""
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(root / f"{subset}.zip", "w") as zf:
        for alphabet, n_chars in alphabets.items():
            for ch in range(1, n_chars + 1):
                for k in range(1, per_class + 1):
                    img = Image.new("1", (105, 105), 1)
                    img.paste(0, (10 * ch, 10 * ch, 10 * ch + 20 + k, 10 * ch + 30))
                    buf = io.BytesIO()
                    img.save(buf, format="PNG")
                    zf.writestr(f"{subset}/{alphabet}/character{ch:02d}/{1000 + ch}_{k:02d}.png", buf.getvalue())
    return root


OML_TRAIN, OML_TEST = (1, 2, 3, 4, 5, 6), (10, 11, 12)


def make_oml(root, flags: str = "both", per_class: int = 4, boxes: bool = False, absolute: bool = False):
    """images/<label>/<k>.jpg (80 x 60) and df.csv. flags: both (OML's "1 vs rest"), split (disjoint
    query / gallery rows, In-Shop style) or none (no flag columns)."""
    rows = []
    for label in OML_TRAIN + OML_TEST:
        for k in range(per_class):
            rel = f"images/{label}/{k}.jpg"
            write_jpeg(root / rel, label, k)
            row = {
                "label": label,
                "path": str(root / rel) if absolute else rel,
                "split": "train" if label in OML_TRAIN else "validation",
                "category": "shoes" if label % 2 else "bags",
            }
            if flags != "none":
                val = label in OML_TEST
                row["is_query"] = (True if flags == "both" else k < 2) if val else None
                row["is_gallery"] = (True if flags == "both" else k >= 2) if val else None
            if boxes:
                row.update(
                    {"x_1": 10, "x_2": 50, "y_1": 5, "y_2": 35}
                    if k % 2 == 0
                    else {"x_1": None, "x_2": None, "y_1": None, "y_2": None}
                )
            rows.append(row)
    df = pd.DataFrame(rows)
    df.to_csv(root / "df.csv", index=False)
    return root, df


def load(dataset: str, root, *overrides):
    cfg = compose_cfg([f"dataset={dataset}", f"dataset.root={root}", *SMALL, *overrides])
    return build_data(cfg.dataset)[0]


def classes_of(ds) -> set:
    return set(np.unique(ds.labels).tolist())


def check_image_split(data, n_train_classes: int, n_val_classes: int, test_classes: set, per_class: int) -> None:
    assert data.num_classes == n_train_classes
    assert sorted(classes_of(data.train)) == list(range(n_train_classes))  # remapped 0..C-1
    assert data.val.num_classes == n_val_classes
    assert classes_of(data.test.query) == test_classes  # the dataset's own ids
    assert not classes_of(data.val.query) & test_classes
    assert len(data.train) == n_train_classes * per_class and len(data.val.query) == n_val_classes * per_class
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= y < n_train_classes
    xq, _ = data.test.query[0]
    assert xq.shape == (3, 32, 32)
    assert data.eval_transform is not None


# ----------------------------------------------------------------------------------------------- per dataset
def test_cub200_split_labels_and_names(tmp_path):
    data = load("cub200", make_cub(tmp_path / "CUB_200_2011"), "dataset.val_fraction=0.34")
    check_image_split(data, 4, 2, {101, 102, 103}, per_class=4)
    assert data.class_names[101] == "101.Bird_101"
    # the val draw is seeded and fixed; the run seed does not move it
    again = load("cub200", tmp_path / "CUB_200_2011", "dataset.val_fraction=0.34", "seed=7")
    assert classes_of(again.val.query) == classes_of(data.val.query)
    # explicit validation classes win over the fraction
    explicit = load("cub200", tmp_path / "CUB_200_2011", "dataset.val_classes=[5,6]")
    assert classes_of(explicit.val.query) == {5, 6} and explicit.num_classes == 4


def test_cub200_parent_folder_is_accepted(tmp_path):
    make_cub(tmp_path / "CUB_200_2011", classes=(1, 2, 3, 4, 101, 102), per_class=2)
    data = load("cub200", tmp_path, "dataset.val_fraction=0.5")
    assert len(data.test.query) == 4


def test_cars196_official_annotations(tmp_path):
    data = load("cars196", make_cars_official(tmp_path / "cars"), "dataset.val_fraction=0.4")
    check_image_split(data, 3, 2, {99, 100, 101}, per_class=3)
    assert data.class_names[1] == "Make Model 1 2012"


def test_cars196_class_per_folder_mirror(tmp_path):
    root = tmp_path / "car_data"
    names = [
        "Acura TL 2012",
        "BMW M3 2012",
        "Chevrolet Volt 2012",
        "Dodge Ram 2010",
        "Ford F-150 2007",
        "Honda Accord 2012",
    ]
    for j, name in enumerate(names):  # the mirrors' classification split: the same class folders twice
        write_jpeg(root / "train" / name / "a.jpg", j, 0)
        write_jpeg(root / "train" / name / "b.jpg", j, 1)
        write_jpeg(root / "test" / name / "c.jpg", j, 2)
    data = load(
        "cars196",
        root,
        "dataset.train_classes={first:1,last:4}",
        "dataset.test_classes={first:5,last:6}",
        "dataset.val_fraction=0.5",
    )
    check_image_split(data, 2, 2, {5, 6}, per_class=3)  # train/ and test/ folders merged per class
    assert data.class_names[5] == "Ford F-150 2007"  # sorted folder-name order


def test_sop_train_and_test_files(tmp_path):
    data = load("sop", make_sop(tmp_path / "Stanford_Online_Products"), "dataset.val_fraction=0.34")
    check_image_split(data, 4, 2, {11319, 11320, 11321}, per_class=3)
    cfg = compose_cfg(["dataset=sop"])
    assert list(cfg.eval.k) == [1, 10, 100, 1000]  # the protocol's Recall@K comes with the dataset


def test_inshop_query_searches_gallery_only(tmp_path):
    data = load("inshop", make_inshop(tmp_path / "inshop"), "dataset.val_fraction=0.34")
    assert data.num_classes == 4 and data.val.num_classes == 2 and data.val.gallery is None
    q, g = data.test.query, data.test.gallery
    assert len(q) == 6 and len(g) == 6
    assert classes_of(q) == classes_of(g) == {7, 8, 9}
    assert not set(q.paths) & set(g.paths)  # a query is never in the set it searches
    assert not classes_of(data.train) & {7, 8, 9} and not classes_of(data.val.query) & {7, 8, 9}
    assert list(compose_cfg(["dataset=inshop"]).eval.k) == [1, 10, 20, 30, 40, 50]


def test_image_folder_fraction_and_explicit_classes(tmp_path):
    root = make_folder_tree(tmp_path / "mine")
    data = load("image_folder", root, "dataset.test_fraction=0.25", "dataset.val_fraction=0.34")
    check_image_split(data, 4, 2, classes_of(data.test.query), per_class=3)
    assert len(classes_of(data.test.query)) == 2
    named = load("image_folder", root, "dataset.test_classes=[goat,hat]", "dataset.val_classes=[apple,bear]")
    assert classes_of(named.test.query) == {7, 8} and classes_of(named.val.query) == {1, 2}
    assert named.class_names[7] == "goat" and named.num_classes == 4
    with pytest.raises(ConfigError, match="class folder 'zebra' does not exist"):
        load("image_folder", root, "dataset.test_classes=[zebra]")


def test_omniglot_zip_drops_alphabets_shared_with_training(tmp_path):
    root = tmp_path / "omniglot"
    make_omniglot_zip(root, "images_background_small1", {"Greek": 3, "Balinese": 3})
    make_omniglot_zip(root, "images_background_small2", {"Greek": 3, "Tagalog": 2})
    data = load("omniglot", root, "dataset.val_fraction=0.34")
    assert data.train.inputs.shape[1:] == (1, 32, 32)  # SMALL sets transform.size=32
    assert data.num_classes == 4 and data.val.num_classes == 2
    names = {data.class_names[c].split("/")[0] for c in classes_of(data.test.query)}
    assert names == {"Tagalog"} and len(data.test.query) == 2 * 4
    # binary image, inverted: strokes are 1, background 0
    assert data.train.inputs.min() == 0 and data.train.inputs.max() == 1 and data.train.inputs.mean() < 0.5


def test_omniglot_several_training_subsets_read_a_shared_character_once(tmp_path):
    root = tmp_path / "omniglot"
    make_omniglot_zip(root, "images_background_small1", {"Greek": 3, "Balinese": 3})
    make_omniglot_zip(root, "images_background_small2", {"Greek": 3, "Tagalog": 2})
    make_omniglot_zip(root, "images_evaluation", {"Tagalog": 1, "Mongolian": 2})
    data = load(
        "omniglot",
        root,
        "dataset.train_subsets=[images_background_small1,images_background_small2]",
        "dataset.test_subsets=[images_evaluation]",
        "dataset.val_fraction=0.25",
    )
    # 3 Greek (in both zips: one class each, files read once) + 3 Balinese + 2 Tagalog = 8 characters
    assert data.num_classes + data.val.num_classes == 8 and data.val.num_classes == 2
    assert len(data.train) + len(data.val.query) == 8 * 4
    # Tagalog is a training alphabet: left out of the test subset
    assert {data.class_names[c].split("/")[0] for c in classes_of(data.test.query)} == {"Mongolian"}
    with pytest.raises(ConfigError, match="dataset.train_subsets is empty"):
        load("omniglot", root, "dataset.train_subsets=[]")


def test_omniglot_validation_alphabets_are_held_out_whole(tmp_path):
    root = tmp_path / "omniglot"
    make_omniglot_zip(root, "images_background_small1", {"Balinese": 3, "Early_Aramaic": 2, "Korean": 2})
    make_omniglot_zip(root, "images_background_small2", {"Tagalog": 2})
    data = load("omniglot", root, "dataset.val_alphabets=[Early_Aramaic]")
    assert data.val.num_classes == 2 and data.num_classes == 5
    assert {data.class_names[c].split("/")[0] for c in classes_of(data.val.query)} == {"Early_Aramaic"}
    with pytest.raises(ConfigError, match="'Tagalog' is not an alphabet of images_background_small1"):
        load("omniglot", root, "dataset.val_alphabets=[Tagalog]")


def test_omniglot_rotated_training_classes(tmp_path):
    root = tmp_path / "omniglot"
    make_omniglot_zip(root, "images_background_small1", {"Balinese": 4, "Korean": 2})
    make_omniglot_zip(root, "images_background_small2", {"Tagalog": 2})
    plain = load("omniglot", root, "dataset.val_alphabets=[Korean]")
    data = load("omniglot", root, "dataset.val_alphabets=[Korean]", "dataset.rotated_classes=4")
    assert plain.num_classes == 4 and data.num_classes == 16 and len(data.train) == 4 * len(plain.train)
    n = len(plain.train)
    x, y = plain.train.inputs, plain.train.labels
    assert torch.equal(data.train.inputs[n : 2 * n], torch.rot90(x, 1, dims=(2, 3)))  # a quarter turn: new classes
    assert (data.train.labels[n : 2 * n] == y + 4).all() and (data.train.labels[3 * n :] == y + 12).all()
    assert torch.equal(data.val.query.inputs, plain.val.query.inputs)  # validation and test are not rotated
    assert torch.equal(data.test.query.inputs, plain.test.query.inputs)
    both = load(
        "omniglot", root, "dataset.val_alphabets=[Korean]", "dataset.rotated_classes=2", "dataset.mirrored_classes=true"
    )
    assert both.num_classes == 16 and torch.equal(both.train.inputs[2 * n : 3 * n], torch.flip(x, dims=(3,)))
    with pytest.raises(ConfigError, match="dataset.rotated_classes=5 must be 1"):
        load("omniglot", root, "dataset.rotated_classes=5")


def test_omniglot_standard_background_evaluation_split(tmp_path):
    """dataset=omniglot_standard on zips in the layout of the release's images_background / images_evaluation."""
    root = tmp_path / "omniglot"
    make_omniglot_zip(
        root, "images_background", {"Alphabet_of_the_Magi": 3, "Anglo-Saxon_Futhorc": 2, "Armenian": 3}, per_class=3
    )
    make_omniglot_zip(root, "images_evaluation", {"Angelic": 2, "Atemayar_Qelisayer": 3}, per_class=3)
    data = load("omniglot_standard", root, "dataset.val_fraction=0.25")
    assert data.num_classes == 6 and data.val.num_classes == 2  # 8 background characters, 2 carved for validation
    assert data.test.num_classes == 5 and len(data.test.query) == 15
    test_alphabets = {data.class_names[c].split("/")[0] for c in classes_of(data.test.query)}
    assert test_alphabets == {"Angelic", "Atemayar_Qelisayer"}
    with pytest.raises(DataError, match="has neither images_evaluation.zip nor images_evaluation/"):
        (root / "images_evaluation.zip").unlink()
        load("omniglot_standard", root)


# Every file of conf/dataset/ is instantiated on a tree in its published layout: a new dataset file fails here
# until it has a generator.
TREES = {
    "cub200": lambda tmp: make_cub(tmp / "CUB_200_2011"),
    "cars196": lambda tmp: make_cars_official(tmp / "cars"),
    "sop": lambda tmp: make_sop(tmp / "Stanford_Online_Products"),
    "inshop": lambda tmp: make_inshop(tmp / "inshop"),
    "image_folder": lambda tmp: make_folder_tree(tmp / "mine"),
    "omniglot": lambda tmp: make_omniglot_zip(
        make_omniglot_zip(tmp / "omniglot", "images_background_small1", {"Greek": 3, "Balinese": 3}),
        "images_background_small2",
        {"Tagalog": 3},
    ),
    "omniglot_standard": lambda tmp: make_omniglot_zip(
        make_omniglot_zip(tmp / "omniglot", "images_background", {"Greek": 3, "Balinese": 3}),
        "images_evaluation",
        {"Angelic": 3},
    ),
    "csv": lambda tmp: make_oml(tmp / "oml")[0],
    "digits": None,  # ships inside scikit-learn
}


@pytest.mark.parametrize("dataset", group_options("dataset"))
def test_every_dataset_file_instantiates_to_class_disjoint_splits(dataset, tmp_path):
    from harness.data.base import DMLData

    assert dataset in TREES, f"conf/dataset/{dataset}.yaml has no tiny tree in TREES to instantiate it on"
    make = TREES[dataset]
    extra = ["dataset.val_fraction=0.34"] + (["dataset.test_fraction=0.25"] if dataset == "image_folder" else [])
    if make is None:
        data = build_data(compose_cfg([f"dataset={dataset}"]).dataset)[0]
    else:
        data = load(dataset, make(tmp_path), *extra)
    assert isinstance(data, DMLData) and len(data.train) and data.val is not None and len(data.test.query)
    train, val, test = classes_of(data.train), classes_of(data.val.query), classes_of(data.test.query)
    assert len(train) == data.num_classes and val and test
    if not data.train.labels.max() < data.num_classes:  # training labels are 0..C-1 (proxies index them)
        pytest.fail("training labels are not remapped to 0..C-1")


# ----------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("dataset", [o for o in group_options("dataset") if o != "digits"])
def test_missing_root_names_path_layout_and_source(dataset, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises((DataError, ConfigError)) as err:
        load(dataset, missing)
    message = str(err.value)
    assert str(missing) in message and "Expected there" in message
    if dataset not in ("image_folder", "csv"):  # a user's own data is published nowhere
        assert "http" in message  # where the dataset is published


def test_incomplete_root_fails_at_start_up(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011", classes=(1, 2, 3, 101), per_class=2)
    victim = sorted((root / "images").rglob("*.jpg"))[3]
    victim.unlink()
    with pytest.raises(DataError, match="incomplete: 1 of 8 listed images are missing") as err:
        load("cub200", root)
    assert str(victim) in str(err.value)
    (root / "image_class_labels.txt").unlink()
    with pytest.raises(DataError, match="lacks image_class_labels.txt"):
        load("cub200", root)


def test_corrupt_image_fails_by_path_or_is_skipped(tmp_path, caplog):
    root = make_cub(tmp_path / "CUB_200_2011", classes=(1, 2, 3, 4, 101, 102), per_class=3)
    data = load("cub200", root, "dataset.val_fraction=0.5")
    bad = 1
    with open(data.train.paths[bad], "r+b") as f:  # truncate a JPEG mid-stream
        f.truncate(200)
    with pytest.raises(DataError, match="corrupt or unreadable image") as err:
        data.train[bad]
    assert data.train.paths[bad] in str(err.value) and "dataset.on_corrupt=skip" in str(err.value)
    # read in a DataLoader worker process: still one line naming the file, not the worker's traceback
    loader = torch.utils.data.DataLoader(data.train, batch_size=len(data.train), num_workers=1)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert str(err.value).startswith(f"corrupt or unreadable image {data.train.paths[bad]}")
    assert "\n" not in str(err.value)

    skipping = load("cub200", root, "dataset.val_fraction=0.5", "dataset.on_corrupt=skip")
    with caplog.at_level(logging.WARNING):
        x, y = skipping.train[bad]
    assert x.shape == (3, 32, 32) and y == skipping.train.labels[bad]  # an image of the same class instead
    assert skipping.train.paths[bad] in caplog.text


def test_run_surfaces_missing_dataset_as_one_line_error(tmp_path, results):
    cfg = compose_cfg(
        ["dataset=cub200", f"dataset.root={tmp_path / 'absent'}", "backbone=resnet18", "trainer.progress=false"],
        results,
    )
    with pytest.raises(DataError, match="CUB-200-2011 not found"):
        run(cfg)
    assert not list(results.rglob("record.json"))


# ----------------------------------------------------------------------------------------------- a real run
def test_one_epoch_resnet18_on_a_cub_tree(tmp_path, results):
    """timm ResNet-18 at 32 px, one epoch on CPU, through run(): the whole image path end to end."""
    root = make_cub(tmp_path / "CUB_200_2011", classes=(1, 2, 3, 4, 5, 6, 101, 102, 103, 104), per_class=6)
    cfg = compose_cfg(
        [
            "dataset=cub200",
            f"dataset.root={root}",
            *SMALL,
            "dataset.val_fraction=0.34",
            "backbone=resnet18",
            "head.embed_dim=32",
            "head.pooling=double",
            "sampler.m=3",
            "sampler.batch_size=12",
            "trainer.epochs=1",
            "trainer.progress=false",
            "eval.batch_size=16",
            "eval.picture_map=pca",
        ],
        results,
    )
    record = run(cfg)
    assert record["status"] == "finished" and record["backbone"] == "resnet18" and record["dataset"] == "cub200"
    assert record["config/dataset.transform.normalize"] == "resnet18"
    for key in ("test/recall@1", "init/test/recall@1", "val/map@r", "test/map@r"):
        assert 0.0 <= record[key] <= 1.0
    from harness.rundir import records

    assert records.read_epochs(record["run_dir"])[-1]["train/steps"] == 2  # 4 classes x 6 images / batch 12
    # the eval transform is what a reloaded run rebuilds from its saved config
    from harness.models.reload import load_run

    loaded = load_run(record["run_dir"])
    img = sorted((root / "images").rglob("*.jpg"))[0]
    assert loaded.embed([str(img)]).shape == (1, 32)
    # an image dataset draws its pictures at the end (eval.pictures=auto), thumbnails read from the image files
    pictures = Path(record["run_dir"]) / "pictures"
    assert sorted(p.name for p in pictures.iterdir()) == ["embedding_map.png", "retrieval_grid.png", "spectrum.png"]


# ----------------------------------------------------------------------------------------------- paper presets
PAPER_PRESETS = paper_presets()
OMNIGLOT_PRESETS = ["omniglot"] + sorted(
    f"omniglot_ablation/{p.stem}" for p in (CONF / "experiment" / "omniglot_ablation").glob("*.yaml")
)


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_preset_builds_its_protocol(preset):
    """Each preset composes, sets only keys its regularizer file has, and builds loss, regularizers and
    optimizer through the real run code (ResNet-18 without download stands in for the pretrained ResNet-50)."""
    from omegaconf import OmegaConf

    from harness.config import complete_config, validate_config
    from harness.data.base import ArrayDataset, DMLData, EvalSet
    from harness.training.build import build_model, build_optimizer, build_regularizers

    cfg = compose_cfg([f"experiment={preset}"])
    validate_config(cfg)
    assert cfg.backbone._target_.endswith("timm_backbone") and cfg.backbone.pretrained
    assert cfg.backbone.model_name == "resnet50.tv_in1k"  # torchvision's weights, as the seeds' releases
    assert cfg.head.embed_dim == (128 if preset.endswith("128") else 512) and cfg.head.pooling in ("avg", "double")
    assert cfg.published.source
    if "recall@1" in cfg.published:  # percent, as printed in the paper
        assert 50 < cfg.published["recall@1"] < 100
    dataset = {"cub": "cub200", "cars": "cars196", "sop": "sop", "inshop": "inshop"}[preset.split("_")[0]]
    assert cfg.dataset._target_.endswith(f".load_{dataset}")
    for name, node in cfg.regularizer.items():  # a misspelt key would be merged silently, then fail at start-up
        own = compose_cfg([f"regularizer={name}"]).regularizer[name]
        assert set(node.keys()) <= set(own.keys()), f"{preset} sets keys {set(node) - set(own)} unknown to {name}"

    classes = np.repeat(np.arange(80), 2)
    fake = ArrayDataset(torch.zeros(len(classes), 3, 8, 8), classes)  # 80 training classes, like CUB's
    cfg = complete_config(cfg, DMLData("preset", fake, EvalSet(fake), EvalSet(fake)))
    with open_dict(cfg):
        cfg.backbone.model_name, cfg.backbone.pretrained = "resnet18", False
    loss = instantiate(cfg.loss)
    regularizers = build_regularizers(cfg.regularizer, loss)
    assert list(regularizers) == list(cfg.regularizer)
    optimizer = build_optimizer(cfg.optimizer, build_model(cfg), loss, regularizers, cfg.lr_mult)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(float(cfg.optimizer.lr))
    if "m" in cfg.sampler:
        assert OmegaConf.select(cfg, "sampler.batch_size") % cfg.sampler.m == 0


@pytest.mark.parametrize("preset", OMNIGLOT_PRESETS)
def test_omniglot_presets_build(preset):
    """experiment=omniglot and each setting of its regularizer ablation compose, set only known keys, and build
    loss, regularizers and optimizer for its 8 x 114 training classes (no data needed)."""
    from harness.config import complete_config, validate_config
    from harness.data.base import ArrayDataset, DMLData, EvalSet
    from harness.training.build import build_model, build_optimizer, build_regularizers

    assert set(group_options("experiment")) - set(PAPER_PRESETS) == {"omniglot"}  # a new preset is one or the other
    cfg = compose_cfg([f"experiment={preset}"])
    validate_config(cfg)
    assert cfg.dataset._target_.endswith(".load_omniglot") and cfg.dataset.augment._target_.endswith("BatchAugment")
    for name, node in (cfg.regularizer or {}).items():
        own = compose_cfg([f"regularizer={name}"]).regularizer[name]
        assert set(node.keys()) <= set(own.keys()), f"{preset} sets keys {set(node) - set(own)} unknown to {name}"
    classes = np.repeat(np.arange(8 * 114), 2)
    fake = ArrayDataset(torch.zeros(len(classes), 1, 28, 28), classes)
    cfg = complete_config(cfg, DMLData("omniglot", fake, EvalSet(fake), EvalSet(fake)))
    loss = instantiate(cfg.loss)
    regularizers = build_regularizers(cfg.regularizer, loss)
    build_optimizer(cfg.optimizer, build_model(cfg), loss, regularizers, cfg.lr_mult)
    expected = "proxy_anchor" if preset.endswith(("nir", "proxy_anchor")) else "multi_similarity"
    assert cfg.loss.name == expected
