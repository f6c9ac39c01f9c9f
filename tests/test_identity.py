"""A run's identity covers the data itself (harness/rundir/fingerprint.py): another tree at the same path is
another run; the same tree elsewhere is the same run."""

import shutil

import pytest

from harness.rundir.fingerprint import data_fingerprint, tree_fingerprint
from harness.rundir.run_dir import RunDir


def make_tree(root, sizes=(10, 20, 30)):
    for c, size in zip("abc", sizes):
        (root / c).mkdir(parents=True, exist_ok=True)
        (root / c / "0.jpg").write_bytes(b"x" * size)
    return root


def fingerprint(root):
    tree_fingerprint.cache_clear()
    return data_fingerprint({"_target_": "x", "root": str(root), "transform": {"size": 32}})


def test_the_fingerprint_follows_the_files_not_the_path(tmp_path):
    a = fingerprint(make_tree(tmp_path / "a"))
    assert a == fingerprint(shutil.copytree(tmp_path / "a", tmp_path / "elsewhere"))  # same data, other path
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    assert fingerprint(tmp_path / "a") == a  # dot-files are not data
    (tmp_path / "a" / "c" / "0.jpg").write_bytes(b"y" * 31)
    assert fingerprint(tmp_path / "a") != a  # a file rewritten with another size
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
