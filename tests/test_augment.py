"""BatchAugment: per-sample random augmentation of a batch, a pure function of (seed, epoch, step)."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_cfg

from harness.data.augment import BatchAugment
from harness.errors import ConfigError
from harness.training.build import build_data

FULL = dict(
    rotation=15,
    shear=10,
    scale=(0.85, 1.15),
    translate=0.1,
    elastic_alpha=1.0,
    elastic_sigma=3.0,
    elastic_p=0.5,
    stroke_p=0.5,
)


def strokes(n: int = 16, size: int = 28) -> torch.Tensor:
    """n copies of one image: a cross of 1-pixel strokes on a black background (Omniglot after inversion)."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, size // 2, 4:-4] = 1.0
    x[:, :, 4:-4, size // 3] = 1.0
    return x


def test_same_seed_epoch_step_same_batch_and_each_part_changes_it():
    aug, x = BatchAugment(**FULL), strokes()
    a = aug(x, seed=0, epoch=3, step=7)
    assert torch.equal(a, aug(x, seed=0, epoch=3, step=7))
    for other in (
        {"seed": 1, "epoch": 3, "step": 7},
        {"seed": 0, "epoch": 4, "step": 7},
        {"seed": 0, "epoch": 3, "step": 8},
    ):
        assert not torch.equal(a, aug(x, **other)), other


def test_rank_zero_draws_what_one_process_draws_and_each_other_rank_its_own():
    """In a data-parallel run each rank augments its share of the global batch: rank 0 as a lone process would,
    the others with draws of their own (two ranks never give their samples the same warp)."""
    aug, x = BatchAugment(**FULL), strokes(8)
    alone = aug(x, seed=0, epoch=2, step=5)
    assert torch.equal(aug(x, seed=0, epoch=2, step=5, rank=0), alone)
    ranks = [aug(x, seed=0, epoch=2, step=5, rank=r) for r in (1, 2, 3)]
    assert all(not torch.equal(r, alone) for r in ranks) and not torch.equal(ranks[0], ranks[1])
    assert torch.equal(aug(x, seed=0, epoch=2, step=5, rank=2), ranks[1])


def test_each_sample_gets_its_own_parameters():
    out = BatchAugment(rotation=20, translate=0.1)(strokes(), seed=0, epoch=1, step=0)
    flat = out.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 1e-3  # no two samples alike
    assert not torch.equal(out[0], strokes(1)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_kept_under_no_grad(dtype):
    x = strokes(5, 32).expand(5, 3, 32, 32).to(dtype)  # three channels too
    with torch.no_grad():
        out = BatchAugment(**FULL)(x, seed=2, epoch=1, step=1)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out.float()).all() and 0 <= out.min() and out.max() <= 1.0 + 1e-6


def test_global_random_streams_are_untouched():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    BatchAugment(**FULL)(strokes(), seed=0, epoch=1, step=0)
    assert torch.equal(torch.rand(4), expected)


def test_stroke_jitter_thickens_and_thins():
    x = strokes(64, 56)
    x[:, :, 20:23, 10:40] = 1.0  # a 3-pixel stroke survives erosion
    thick = BatchAugment(stroke_p=1.0, erode=False)(x, seed=0, epoch=1, step=0)
    assert (thick.sum((1, 2, 3)) > x.sum((1, 2, 3))).all()
    both = BatchAugment(stroke_p=1.0)(x, seed=0, epoch=1, step=0).sum((1, 2, 3))
    assert (both > x[0].sum()).any() and (both < x[0].sum()).any()
    assert torch.equal(BatchAugment(stroke_p=0.0, rotation=0)(x, seed=0, epoch=1, step=0), x)  # nothing on: identity


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"affine_p": 1.5}, "affine_p=1.5 must be a probability"),
        ({"scale": (1.2, 0.8)}, "scale=[1.2, 0.8] must be [lo, hi]"),
        ({"rotation": -5}, "magnitudes"),
        ({"stroke_kernel": 1}, "stroke_kernel=1 must be >= 2"),
    ],
)
def test_bad_settings_fail_with_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BatchAugment(**kwargs)


def omniglot_tree(tmp_path):
    from test_datasets import make_omniglot_zip

    root = tmp_path / "omniglot"
    make_omniglot_zip(root, "images_background_small1", {"Balinese": 4, "Korean": 4}, per_class=6)
    make_omniglot_zip(root, "images_background_small2", {"Tagalog": 3}, per_class=6)
    return root


AUGMENT = "dataset.augment={_target_:harness.data.augment.BatchAugment,rotation:10,translate:0.1,stroke_p:0.5}"


def test_dataset_augment_node_is_built_beside_the_data(tmp_path):
    """dataset.augment: null is off; a _target_ node becomes a BatchAugment beside (not inside) the data."""
    base = ["dataset=omniglot", f"dataset.root={omniglot_tree(tmp_path)}", "dataset.val_fraction=0.25"]
    data, augment = build_data(compose_cfg(base).dataset)
    assert augment is None and data.num_classes == 6
    data, augment = build_data(compose_cfg(base + [AUGMENT]).dataset)
    assert isinstance(augment, BatchAugment) and augment.affine is not None and data.num_classes == 6
    assert augment(data.train.inputs[:4], seed=0, epoch=1, step=0).shape == (4, 1, 28, 28)
    with pytest.raises(ConfigError, match="dataset.augment works on image batches, but digits gives inputs of shape"):
        build_data(compose_cfg(["+dataset.augment={_target_:harness.data.augment.BatchAugment}"]).dataset)


def test_augmented_training_resumes_to_the_numbers_of_an_uninterrupted_run(tmp_path):
    """CPU: an augmented run cut after epoch 2 and resumed equals the uninterrupted run, and augmenting changes
    the numbers (the loop really applies it)."""
    import harness
    from harness.rundir import records

    root = omniglot_tree(tmp_path)

    def cfg(results, *extra):
        return compose_cfg(
            [
                "dataset=omniglot",
                f"dataset.root={root}",
                "dataset.val_fraction=0.25",
                "backbone=small_cnn",
                "backbone.width=4",
                "head.embed_dim=8",
                "sampler.m=3",
                "sampler.batch_size=12",
                "trainer.epochs=4",
                "trainer.progress=false",
                "eval.utilization=false",
                *extra,
            ],
            results,
        )

    whole = harness.run(cfg(tmp_path / "whole", AUGMENT))
    plain = harness.run(cfg(tmp_path / "plain"))

    def interrupt(epoch, _metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    cut = cfg(tmp_path / "cut", AUGMENT)
    with pytest.raises(KeyboardInterrupt):
        harness.run(cut, on_evaluate=interrupt)
    resumed = harness.run(cut)
    assert resumed["attempts"] == 2
    for key in [k for k in whole if k.startswith(("val/", "test/", "diag/"))] + ["selected_epoch"]:
        assert resumed[key] == whole[key], key
    losses = lambda rec: [r["train/loss"] for r in records.read_epochs(rec["run_dir"])[1:]]  # noqa: E731
    assert losses(resumed) == losses(whole)
    assert losses(plain) != losses(whole)
