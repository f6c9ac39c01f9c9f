"""Pictures of a run (python -m harness.inspect): drawn from the networks the run evaluated (the untrained one
reproduces the run's epoch-0 numbers, the trained one its test numbers), the grid's worst queries are the worst,
siblings that differ only in the regularizer join the spectrum, and every PNG decodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, exit_code, tiny
from PIL import Image

from harness.evaluation import evaluate_embeddings
from harness.inspect import PICTURES, make_pictures
from harness.inspect.grid import neighbours_and_ap, pick_queries, thumbnail
from harness.inspect.loading import load_inspection
from harness.inspect.spectrum import regularizer_siblings


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two real digits runs of 3 epochs that differ only in the regularizer, and one of another seed."""
    from harness.training.task import run

    results = tmp_path_factory.mktemp("results")
    out = {}
    for name, overrides in {"none": [], "antico": ["regularizer=antico_pair"], "seed1": ["seed=1"]}.items():
        out[name] = Path(run(tiny(overrides, results=results, epochs=3))["run_dir"])
    return out


def test_the_networks_are_those_the_run_evaluated(runs):
    """Untrained = the run's epoch-0 network (seeded as the run seeded it); trained = the selected epoch."""
    inspection = load_inspection(runs["none"])
    record = inspection.record
    untrained = evaluate_embeddings(inspection.untrained.query, inspection.query_labels, with_nmi=False)
    trained = evaluate_embeddings(inspection.trained.query, inspection.query_labels, with_nmi=False)
    assert untrained["map@r"] == pytest.approx(record["init/test/map@r"], abs=1e-6)
    assert trained["map@r"] == pytest.approx(record["test/map@r"], abs=1e-6)
    assert untrained["map@r"] != pytest.approx(trained["map@r"], abs=1e-4)


def test_the_grid_shows_the_worst_queries_and_ap_at_r_matches_the_metric(runs):
    inspection = load_inspection(runs["none"], untrained=False)
    idx, ap = neighbours_and_ap(inspection, k=8)
    assert idx.shape == (len(inspection.query_labels), 8)
    assert np.nanmean(ap) == pytest.approx(inspection.record["test/map@r"], abs=1e-6)
    worst, sample = pick_queries(ap, 4, 4, seed=0)
    assert sorted(ap[worst]) == sorted(np.sort(ap)[:4]) and not set(worst) & set(sample)
    assert pick_queries(ap, 4, 4, seed=0) == (worst, sample)  # seeded


def test_siblings_differ_only_in_the_regularizer(runs):
    assert regularizer_siblings(runs["none"]) == [runs["antico"]]
    assert regularizer_siblings(runs["antico"]) == [runs["none"]]
    assert regularizer_siblings(runs["seed1"]) == []


def test_every_picture_is_written_and_decodes(runs, tmp_path):
    paths = make_pictures(runs["none"], out=tmp_path, map_method="pca")
    assert [p.name for p in paths] == [f"{name}.png" for name in PICTURES]
    for path in paths:
        with Image.open(path) as img:
            assert img.format == "PNG" and min(img.size) >= 300
        assert path.stat().st_size < 300_000


def test_thumbnails_of_vectors_tensors_and_image_files(tmp_path):
    import torch

    from harness.data.base import ArrayDataset
    from harness.data.images import ImageListDataset

    digits = ArrayDataset(torch.arange(64, dtype=torch.float32).repeat(2, 1), np.array([0, 1]))
    image, cmap = thumbnail(digits, 1)
    assert image.shape == (8, 8) and cmap == "gray_r" and image.min() == 0 and image.max() == 1
    gray = ArrayDataset(torch.rand(2, 1, 28, 28), np.array([0, 1]))
    assert thumbnail(gray, 0)[0].shape == (28, 28)
    path = tmp_path / "a.png"
    Image.new("RGB", (200, 120), (10, 200, 30)).save(path)
    image, cmap = thumbnail(ImageListDataset([path], [3]), 0, size=64)
    assert image.shape == (64, 64, 3) and cmap is None and tuple(image[32, 32]) == (10, 200, 30)


def test_cli_writes_into_the_run_directory_and_refuses_a_non_run(runs, tmp_path, capsys):
    from harness.inspect.__main__ import main

    cmd = [sys.executable, "-m", "harness.inspect", str(runs["seed1"]), "--only", "retrieval_grid", "--map", "pca"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (runs["seed1"] / "pictures" / "retrieval_grid.png").is_file()
    assert exit_code(main, [str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_umap_map_of_a_run(runs, tmp_path):
    """The real UMAP (umap-learn, numba-compiled on first use: ~25 s), on a bounded sample of 150 points. It leaves
    torch's thread count as it was (numba resets OpenMP's: later runs in the process would round differently)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        [path] = make_pictures(runs["none"], out=tmp_path, only=["embedding_map"], map_method="umap", max_points=150)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    with Image.open(path) as img:
        assert img.size[0] > img.size[1] >= 300


def test_a_run_draws_its_pictures_at_the_end_and_hands_them_to_the_trackers(tmp_path, runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import harness

    assert not (runs["antico"] / "pictures").exists()  # eval.pictures=auto: not for a vector dataset
    cfg = tiny(
        ["logger=tensorboard", "eval.pictures=true", "eval.picture_map=pca", "eval.test_every_epoch=true"],
        tmp_path / "results",
        epochs=2,
    )
    record = harness.run(cfg)
    run_dir = Path(record["run_dir"])
    assert sorted(p.name for p in (run_dir / "pictures").iterdir()) == sorted(f"{p}.png" for p in PICTURES)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    # test/* is in every epoch row here (test_every_epoch): the record adds no second value at the selected epoch
    assert [e.step for e in events.Scalars("test/map@r")] == [1, 2]
    assert [e.step for e in events.Scalars("diag/test/coding_rate")] == [record["selected_epoch"]]
    assert sorted(events.Tags()["images"]) == sorted(f"pictures/{p}" for p in PICTURES)
    assert [e.step for e in events.Images("pictures/spectrum")] == [2]


@pytest.mark.parametrize("resumed", [False, True])
def test_the_pictures_at_the_end_embed_nothing_again_and_see_what_the_cli_rebuilds(tmp_path, monkeypatch, resumed):
    """A run draws its pictures from the embeddings fit made (a resumed run rebuilds only the untrained network),
    and they are the very ones python -m harness.inspect rebuilds from the run directory."""
    import harness
    import harness.inspect

    seen = []
    monkeypatch.setattr(harness.inspect, "make_pictures", lambda run_dir, **kw: seen.append(kw["inspection"]) or [])
    cfg = tiny(["eval.pictures=true"], tmp_path / "results", epochs=3)
    if resumed:

        def stop_in_epoch_2(epoch, val):  # epoch 1 is checkpointed
            if epoch == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            harness.run(cfg, on_evaluate=stop_in_epoch_2)
    record = harness.run(cfg)
    assert record["attempts"] == 1 + resumed
    [at_end] = seen
    rebuilt = load_inspection(record["run_dir"])
    for name in ("trained", "untrained"):
        np.testing.assert_array_equal(getattr(at_end, name).query, getattr(rebuilt, name).query)
    np.testing.assert_array_equal(at_end.query_labels, rebuilt.query_labels)
    assert at_end.record == rebuilt.record and at_end.class_names == rebuilt.class_names


def test_a_bad_pictures_setting_is_one_line_naming_the_fix(tmp_path):
    import harness
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.pictures=sometimes must be auto"):
        harness.run(tiny(["eval.pictures=sometimes"], tmp_path / "results"))


# ------------------------------------------------------------------------------------------------ two runs
def test_two_runs_side_by_side_and_a_run_beside_its_baseline(runs, tmp_path, capsys):
    from harness.inspect.__main__ import main

    names = ["compare_retrieval_grid.png", "compare_embedding_map.png", "compare_spectrum.png"]
    assert main([str(runs["none"]), str(runs["antico"]), "--map", "pca", "--out", str(tmp_path / "ab")]) == 0
    assert sorted(p.name for p in (tmp_path / "ab").iterdir()) == sorted(names)
    with Image.open(tmp_path / "ab" / "compare_retrieval_grid.png") as img:  # 5 queries x 2 runs: rows of both
        assert img.size[1] > img.size[0] * 0.9
    # --baseline finds the run beside it with regularizer=none (same config and seed) and writes into run B
    assert main([str(runs["antico"]), "--baseline", "--map", "pca", "--only", "spectrum"]) == 0
    assert (runs["antico"] / "pictures" / f"compare_{runs['none'].name}" / "compare_spectrum.png").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # no run of seed 1 differs only in the regularizer
        main([str(runs["seed1"]), "--baseline"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no finished baseline" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argument, fix",
    [
        (["--k", "0"], "--k 0 must be an integer >= 1"),
        (["--worst", "-1"], "--worst -1 must be an integer >= 0"),
        (["--max-points", "0"], "--max-points 0 must be an integer >= 2"),
        (["--only", "umap"], "is not a picture"),
    ],
)
def test_bad_inspect_arguments_are_one_line_naming_the_fix(argument, fix, tmp_path, capsys):
    from harness.inspect.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), *argument])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert fix in err and len(err.strip().splitlines()) == 1


def test_a_run_of_a_sweep_draws_the_cheap_pictures_and_its_comparison_with_the_baseline(runs, monkeypatch):
    """In a multirun the UMAP map is left to python -m harness.inspect; a regularized run that finishes after its
    baseline draws the two side by side into its own directory (the antico sibling is no baseline: skipped)."""
    import harness
    from harness.tracking import naming

    monkeypatch.setattr(naming.SweepContext, "current", classmethod(lambda cls: cls("2026-01-01_00-00-00")))
    results = runs["none"].parents[2]
    overrides = ["regularizer=metrix_embedding", "eval.pictures=true", "eval.picture_map=umap"]
    run_dir = Path(harness.run(tiny(overrides, results, epochs=3))["run_dir"])
    pictures = run_dir / "pictures"
    assert sorted(p.name for p in pictures.iterdir()) == sorted(
        ["retrieval_grid.png", "spectrum.png", f"compare_{runs['none'].name}"]
    )
    compared = pictures / f"compare_{runs['none'].name}"
    assert sorted(p.name for p in compared.iterdir()) == ["compare_retrieval_grid.png", "compare_spectrum.png"]
