"""Bad input: one line naming the fix, a non-zero exit, never a traceback, nothing that looks finished."""

from __future__ import annotations

import pytest

from conftest import compose_cfg
from harness.errors import ConfigError, DataError
from test_datasets import make_folder_tree


@pytest.mark.parametrize("classes,expected", [
    (("apple",), "has 1 class folder(s) (apple); metric learning needs at least 4 disjoint classes"),
    (("apple", "bear", "car"), "has 3 class folder(s)"),
])
def test_an_image_folder_with_too_few_classes_does_not_suggest_lowering_val_fraction(tmp_path, classes, expected):
    from harness.task import instantiate

    root = make_folder_tree(tmp_path / "tree", names=classes)
    cfg = compose_cfg(["dataset=image_folder", f"dataset.root={root}"])
    with pytest.raises(DataError) as err:
        instantiate(cfg.dataset, _convert_="all")
    assert expected in str(err.value) and "val_fraction" not in str(err.value)


def test_too_few_training_classes_for_a_validation_split_say_so(tmp_path):
    from harness.data.splits import carve_validation

    with pytest.raises(ConfigError) as err:
        carve_validation([1, 2, 3], val_fraction=0.01)
    assert "only 3 training class(es)" in str(err.value) and "lower" not in str(err.value)
    with pytest.raises(ConfigError, match="lower it"):  # here a lower fraction does help
        carve_validation(list(range(6)), val_fraction=0.9)
