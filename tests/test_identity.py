"""A run's identity covers the data by content (harness/rundir/fingerprint.py): every file the dataset reads,
wherever it lives, by its name and a blake2b of its bytes. Other pixels under the same names and sizes, a CSV
relabelled in place, an image outside the root: another run; the same tree staged elsewhere: the same run."""

import os
import shutil
import sqlite3

import pytest

from harness.errors import DataError
from harness.rundir import hashes
from harness.rundir.fingerprint import MANIFEST, data_fingerprint, write_manifest
from harness.rundir.run_dir import RunDir


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(hashes.CACHE_ENV, str(tmp_path / "cache" / "hashes.sqlite3"))


def make_tree(root, fill=b"x", sizes=(10, 20, 30)):
    for c, size in zip("abc", sizes):
        (root / c).mkdir(parents=True, exist_ok=True)
        (root / c / "0.jpg").write_bytes(fill * size)
    return root


def fingerprint(root, **kwargs):
    return data_fingerprint({"_target_": "x", "root": str(root), "transform": {"size": 32}}, **kwargs)


def test_the_fingerprint_is_the_content_not_the_names_sizes_or_path(tmp_path):
    a = fingerprint(make_tree(tmp_path / "a"))
    assert fingerprint(make_tree(tmp_path / "b", fill=b"y")) != a  # same names and sizes, other pixels
    assert a == fingerprint(shutil.copytree(tmp_path / "a", tmp_path / "staged"))  # new inodes, times, path
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    assert fingerprint(tmp_path / "a") == a  # dot-files are not data
    (tmp_path / "a" / "c" / "0.jpg").write_bytes(b"z" * 30)  # rewritten in place, same size
    assert fingerprint(tmp_path / "a") != a
    (tmp_path / "a" / "c" / "0.jpg").write_bytes(b"x" * 30)
    assert fingerprint(tmp_path / "a") == a
    (tmp_path / "a" / "c" / "0.jpg").rename(tmp_path / "a" / "b" / "1.jpg")
    assert fingerprint(tmp_path / "a") != a  # a file moved to another class
    shutil.rmtree(tmp_path / "a")
    assert fingerprint(tmp_path / "a") != a and fingerprint(tmp_path / "nowhere") == fingerprint(tmp_path / "a")


def test_in_memory_data_is_fingerprinted_by_its_arrays():
    from harness.data.digits import load_digits

    build = lambda v: lambda: load_digits([0, 1, 2, 3, 4], [5, 6, 7, 8, 9], val_classes=v)  # noqa: E731
    node = {"_target_": "harness.data.digits.load_digits"}
    assert data_fingerprint(node, build([3, 4])) == data_fingerprint(node, build([3, 4]))
    assert data_fingerprint(node, build([3, 4])) != data_fingerprint(node, build([2, 4]))


def test_the_cache_serves_unchanged_files_and_never_a_touched_one(tmp_path, monkeypatch):
    """The cache is keyed on (path, size, mtime_ns, ctime_ns, inode): a planted wrong hash under the same keys
    is what it serves (so it is used), a rewrite of the same size changes ctime and is hashed again; an
    unusable cache location (a read-only home) costs nothing but speed."""
    monkeypatch.setattr(hashes, "RACY_S", 0.0)  # the files were written a moment ago
    root = make_tree(tmp_path / "a")
    first = fingerprint(root)
    db = tmp_path / "cache" / "hashes.sqlite3"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 3
        con.execute("UPDATE files SET digest = 'planted'")
    assert fingerprint(root) != first  # served from the cache
    (root / "a" / "0.jpg").write_bytes(b"x" * 10)  # same bytes, same size: only ctime moves
    (root / "b" / "0.jpg").write_bytes(b"x" * 20)
    (root / "c" / "0.jpg").write_bytes(b"x" * 30)
    assert fingerprint(root) == first  # every touched file hashed again
    monkeypatch.setenv(hashes.CACHE_ENV, str(tmp_path / "a" / "a" / "0.jpg" / "no-dir" / "h.sqlite3"))
    assert fingerprint(root) == first
    monkeypatch.setenv(hashes.CACHE_ENV, "off")
    assert fingerprint(root) == first


def test_a_csv_relabelled_in_place_and_files_outside_the_root_enter_the_identity(tmp_path):
    """dataset=csv: the table and every image its rows name, inside the root or by absolute path elsewhere, and
    ``dataset.csv=/abs/table.csv`` outside the root; the paths themselves stay out (a staged copy is the same)."""
    from conftest import compose_cfg
    from test_datasets import make_oml

    from harness.rundir import identity

    root, df = make_oml(tmp_path / "data", per_class=2)

    base = compose_cfg(["dataset=csv", f"dataset.root={root}"], tmp_path / "r")

    def run_dir(**dataset):
        cfg = base.copy()
        cfg.dataset.update(dataset)
        identity.forget_data()
        return RunDir.for_config(cfg).path

    first = run_dir()
    table = (root / "df.csv").read_text()
    relabelled = table.replace("\n1,images/1/0.jpg", "\n2,images/1/0.jpg")
    assert len(relabelled) == len(table) and relabelled != table
    (root / "df.csv").write_text(relabelled)
    assert run_dir() != first
    (root / "df.csv").write_text(table)
    assert run_dir() == first

    outside = tmp_path / "elsewhere"
    shutil.copytree(root / "images", outside / "images")
    df.assign(path=[str(outside / p) for p in df.path]).to_csv(outside / "table.csv", index=False)
    absolute = run_dir(csv=str(outside / "table.csv"))
    assert absolute != first
    image = outside / "images" / "10" / "0.jpg"
    image.write_bytes(image.read_bytes()[:-1] + bytes([image.read_bytes()[-1] ^ 1]))  # one bit of one pixel file
    assert run_dir(csv=str(outside / "table.csv")) != absolute
    staged = shutil.copytree(root, tmp_path / "node-local")  # the root staged with cp -r: the same run
    assert run_dir(root=str(staged)) == first
    shutil.copy(outside / "table.csv", tmp_path / "table-staged.csv")  # an absolute table staged elsewhere
    assert run_dir(csv=str(tmp_path / "table-staged.csv")) == run_dir(csv=str(outside / "table.csv"))


def test_a_manifest_spares_a_planner_the_hashing_and_a_run_checks_it(tmp_path):
    from harness.rundir.fingerprint import main

    root = make_tree(tmp_path / "a")
    content = fingerprint(root)
    assert main([str(root)]) == 0 and (root / MANIFEST).exists()
    assert fingerprint(root) == content == fingerprint(root, trust_manifest=True)  # the manifest is not data
    lie = (root / MANIFEST).read_text().replace('"blake2b": "', '"blake2b": "0', 1)
    (root / MANIFEST).write_text(lie)
    assert fingerprint(root, trust_manifest=True) != content  # a planner takes the manifest's word
    with pytest.raises(DataError, match=f"does not match the dataset's checksum manifest .{MANIFEST}.") as err:
        fingerprint(root)  # a run never does: it hashes the bytes and names the file that disagrees
    assert "python -m harness.rundir.fingerprint" in str(err.value) and "\n" not in str(err.value)
    write_manifest(root)
    st = os.stat(root / "b" / "0.jpg")
    (root / "b" / "0.jpg").write_bytes(b"q" * 20)  # a stale manifest: the file changed since
    os.utime(root / "b" / "0.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    fresh = shutil.copytree(root, tmp_path / "fresh", ignore=shutil.ignore_patterns(MANIFEST))
    assert fingerprint(root, trust_manifest=True) == fingerprint(fresh) != content  # its changed file is hashed


# ----------------------------------------------------------------------------------------------- runs
IMAGES = [
    "dataset=image_folder",
    "backbone=small_cnn",
    "dataset.transform.size=32",
    "dataset.transform.resize=36",
    "sampler.m=2",
    "sampler.batch_size=4",
    "sampler.batches_per_epoch=2",
    "dataset.test_fraction=0.25",
    "dataset.val_fraction=0.34",
    "eval.nmi=false",
    "eval.utilization=false",
    "head.embed_dim=8",
]


def image_run(results, root, *extra):
    from conftest import tiny

    return tiny([*IMAGES, f"dataset.root={root}", *extra], results, epochs=1)


@pytest.mark.slow
def test_the_same_command_on_another_image_tree_is_another_run(tmp_path, caplog):
    import logging

    from test_datasets import make_folder_tree

    import harness

    results, root = tmp_path / "results", tmp_path / "data"
    make_folder_tree(root, per_class=4)
    first = harness.run(image_run(results, root))
    shutil.rmtree(root)
    make_folder_tree(root, per_class=5)  # another tree at the same path
    with caplog.at_level(logging.INFO, logger="harness"):
        second = harness.run(image_run(results, root))
    assert "already finished" not in caplog.text
    assert second["run_dir"] != first["run_dir"] and second["data_fingerprint"] != first["data_fingerprint"]
    assert second["config_hash"] != first["config_hash"]
    copy = shutil.copytree(root, tmp_path / "elsewhere")  # the same tree at another path: the same run
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="harness"):
        third = harness.run(image_run(results, copy))
    assert third["run_dir"] == second["run_dir"] and "already finished, skipped" in caplog.text
    assert RunDir.for_config(image_run(results, copy)).path == RunDir.for_config(image_run(results, root)).path


def test_a_directory_holding_another_identity_is_refused_in_one_line(results):
    import json

    from conftest import tiny

    import harness
    from harness.errors import ConfigError
    from harness.rundir import identity

    cfg = tiny(["sampler.batches_per_epoch=2", "eval.nmi=false", "eval.utilization=false"], results)
    harness.run(cfg)
    run_dir = RunDir.for_config(cfg).path
    stored = json.loads((run_dir / identity.FILE).read_text())
    assert stored["digest"].startswith(RunDir.for_config(cfg).keys["config_hash"])
    (run_dir / identity.FILE).write_text(json.dumps({"digest": "0" * 40, "data": "other"}))
    before = (run_dir / "record.json").read_bytes()
    with pytest.raises(ConfigError) as err:
        harness.run(cfg)
    assert "holds another run (its data differ" in str(err.value) and "\n" not in str(err.value)
    assert (run_dir / "record.json").read_bytes() == before  # untouched, not reported as finished


def test_loader_processes_change_the_augmented_batches_so_num_workers_is_part_of_the_identity(tmp_path):
    """The audit of the keys left out of the identity: loader processes draw augmentations from their own random
    streams (another trainer.num_workers, other batches), while the torch thread count gives the same numbers."""
    import hashlib

    import torch
    from test_datasets import make_folder_tree

    from harness.training.build import build_loader, instantiate

    root = make_folder_tree(tmp_path / "data", per_class=4)
    digests = {}
    for workers in (0, 2):
        cfg = image_run(tmp_path / "r", root)
        data = instantiate(cfg.dataset, _convert_="all")
        sampler = instantiate(cfg.sampler, labels=data.train.labels, seed=0)
        loader = build_loader(data.train, sampler, workers, 0, torch.device("cpu"))
        h = hashlib.sha1()
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            for inputs, labels in loader:
                h.update(inputs.numpy().tobytes() + labels.numpy().tobytes())
        digests[workers] = h.hexdigest()
    assert digests[0] != digests[2]
    assert (
        RunDir.for_config(image_run(tmp_path, root, "trainer.num_workers=2")).path
        != RunDir.for_config(image_run(tmp_path, root)).path
    )
    assert (
        RunDir.for_config(image_run(tmp_path, root, "trainer.num_threads=3")).path
        == RunDir.for_config(image_run(tmp_path, root)).path
    )


def test_the_thread_count_changes_no_trained_number(tmp_path):
    """trainer.num_threads stays out of the identity: the training losses, the selected epoch and every retrieval
    metric are identical with 1 and 2 threads; float64 diagnostics differ at most in their last bits (the
    reductions split differently), and the count a run had is in its record's ``device``."""
    import torch
    from conftest import tiny

    import harness
    from harness.rundir import records

    threads = torch.get_num_threads()
    fast = ["sampler.batches_per_epoch=4", "eval.nmi=false", "eval.utilization=false"]
    try:
        one = harness.run(tiny([*fast, "trainer.num_threads=1"], tmp_path / "a", epochs=2))
        two = harness.run(tiny([*fast, "trainer.num_threads=2"], tmp_path / "b", epochs=2))
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: leave it as it was for the other tests
    assert [r.get("train/loss") for r in records.read_epochs(one["run_dir"])] == [
        r.get("train/loss") for r in records.read_epochs(two["run_dir"])
    ]
    for key in [k for k in one if k.startswith(("val/", "test/", "init/", "raw/"))] + ["selected_epoch"]:
        assert one[key] == two[key], key
    for key in [k for k in one if k.startswith("diag/")]:
        assert one[key] == pytest.approx(two[key], rel=1e-12, abs=1e-12), key
    assert one["name"] == two["name"] and "1 threads" in one["device"] and "2 threads" in two["device"]
