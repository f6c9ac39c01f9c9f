"""Real-data runs on Omniglot, read straight from the zips in ../shared/data/omniglot.

Train on images_background_small1, test on the alphabets of images_background_small2 that training never
saw (106 characters). The trained network must retrieve the unseen characters far better than the same
network untrained (init/test/*): the small CNN with the dataset's defaults, and one epoch of the
experiment=omniglot preset (rotated and mirrored training classes, batch augmentation on the device).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA, compose_cfg

from harness.training.task import run

OMNIGLOT = SHARED_DATA / "omniglot"
ZIPS = ("images_background_small1.zip", "images_background_small2.zip")

pytestmark = pytest.mark.skipif(
    not all((OMNIGLOT / z).is_file() for z in ZIPS),
    reason=f"Omniglot zips not found in {OMNIGLOT} ({', '.join(ZIPS)}); "
    f"get them from https://github.com/brendenlake/omniglot (python/) to run this test",
)

# the command a user types: python run.py dataset=omniglot backbone=small_cnn + these
OVERRIDES = [
    "dataset=omniglot",
    f"dataset.root={OMNIGLOT}",
    "backbone=small_cnn",
    "sampler.m=4",
    "sampler.batch_size=64",
    "trainer.epochs=3",
    "eval.val_nmi=false",
    "trainer.progress=false",
    "eval.picture_map=pca",
]  # PCA: the UMAP map's first call compiles for ~25 s (test_inspect tests it once)


@pytest.mark.slow
def test_small_cnn_on_omniglot_beats_its_untrained_self(results):
    record = run(compose_cfg(OVERRIDES, results))
    assert record["status"] == "finished" and record["dataset"] == "omniglot"
    # the zero-shot split: 136 training characters (27 carved for validation), 106 unseen test characters
    assert record["config/head.embed_dim"] == 64
    print("\nOmniglot test (106 unseen characters, 2,120 images):")
    for key in ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi"):
        print(f"  {key:<12} untrained {record[f'init/test/{key}']:.4f}   trained {record[f'test/{key}']:.4f}")
    assert record["test/recall@1"] > record["init/test/recall@1"] + 0.15
    assert record["test/map@r"] > 2 * record["init/test/map@r"]
    assert record["test/nmi"] > record["init/test/nmi"]
    # an image dataset draws its pictures at the end (eval.pictures=auto)
    pictures = Path(record["run_dir"]) / "pictures"
    assert sorted(p.name for p in pictures.iterdir()) == ["embedding_map.png", "retrieval_grid.png", "spectrum.png"]


@pytest.mark.slow
def test_one_epoch_of_the_omniglot_preset_learns(results):
    record = run(
        compose_cfg(
            [
                "experiment=omniglot",
                f"dataset.root={OMNIGLOT}",
                "trainer.epochs=1",
                "sampler.batches_per_epoch=120",
                "trainer.progress=false",
                "eval.utilization=false",
                "eval.pictures=false",
            ],
            results,
        )
    )  # 120 of the epoch's 285 steps
    assert record["status"] == "finished" and record["config/dataset.rotated_classes"] == 4
    assert record["val/map@r"] > record["init/val/map@r"] + 0.2 and record["test/map@r"] > 2 * record["init/test/map@r"]
    assert record["train_cpu_s"] > 0
