"""A reloaded run embeds raw inputs exactly as the run embedded its own test split (harness/models/reload.py):
raw digits (scikit-learn's 0-16 intensities, which the loader scales) and image files (decoded, resized and
cropped as the loader does) give the record's test MAP@R."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny

import harness
from harness.evaluation import evaluate_embeddings

FAST = ["sampler.batches_per_epoch=2", "eval.nmi=false", "eval.utilization=false"]


def test_raw_digits_embed_as_the_run_embedded_its_test_split(tmp_path):
    from sklearn.datasets import load_digits

    record = harness.run(tiny(FAST, tmp_path))
    run = harness.load_run(record["run_dir"])
    bunch = load_digits()
    test = np.isin(bunch.target, [5, 6, 7, 8, 9])
    for raw in (bunch.data[test], list(bunch.data[test])):  # an array of rows, or a list of them
        metrics = evaluate_embeddings(run.embed(raw), bunch.target[test], with_nmi=False)
        assert metrics["map@r"] == pytest.approx(record["test/map@r"], abs=1e-6)


def test_image_files_embed_as_the_run_embedded_its_test_split(tmp_path):
    from test_datasets import make_folder_tree
    from test_identity import image_run

    from harness.training.build import build_data

    root = make_folder_tree(tmp_path / "data", per_class=4)
    cfg = image_run(tmp_path / "results", root)
    record = harness.run(cfg)
    run = harness.load_run(record["run_dir"])
    query = build_data(cfg.dataset)[0].test.query  # the test split's files, as the run listed them
    metrics = evaluate_embeddings(run.embed(query.paths), query.labels, with_nmi=False)
    assert metrics["map@r"] == pytest.approx(record["test/map@r"], abs=1e-6)
