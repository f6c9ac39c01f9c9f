"""A run's identity covers the data itself (harness/fingerprint.py): another tree at the same path is another run;
the same tree elsewhere is the same run."""

import shutil

from harness.fingerprint import data_fingerprint, tree_fingerprint


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

    build = lambda v: (lambda: load_digits([0, 1, 2, 3, 4], [5, 6, 7, 8, 9], val_classes=v))  # noqa: E731
    node = {"_target_": "harness.data.digits.load_digits"}
    assert data_fingerprint(node, build([3, 4])) == data_fingerprint(node, build([3, 4]))
    assert data_fingerprint(node, build([3, 4])) != data_fingerprint(node, build([2, 4]))
