"""End-to-end digits runs: every base loss trains, same seed -> same metrics, the record's schema, resume."""

import json
import math
from pathlib import Path

import pytest
from conftest import group_options, tiny

import harness
from harness.rundir import records
from harness.rundir.run_dir import RunDir

FAST = ["sampler.batches_per_epoch=3"]


@pytest.mark.parametrize("loss", group_options("loss"))
def test_every_base_loss_trains_one_epoch_on_digits(loss, results):
    record = harness.run(tiny([f"loss={loss}", *FAST], results))
    assert record["status"] == "finished"
    assert record["loss"] == loss
    for key in ("val/map@r", "test/map@r", "test/recall@1", "test/nmi"):
        assert 0.0 <= record[key] <= 1.0
    rows = records.read_epochs(record["run_dir"])
    assert [r["epoch"] for r in rows] == [0, 1]
    assert math.isfinite(rows[1]["train/base"]) and "lr/backbone" in rows[1]


def test_same_seed_same_metrics_different_seed_different(tmp_path):
    a = harness.run(tiny(["seed=3"], tmp_path / "a", epochs=3))
    b = harness.run(tiny(["seed=3"], tmp_path / "b", epochs=3))
    c = harness.run(tiny(["seed=4"], tmp_path / "c", epochs=3))
    metrics = [k for k in a if k.startswith(("val/", "test/", "diag/"))]
    assert metrics and all(a[k] == b[k] for k in metrics)
    assert a["test/map@r"] != c["test/map@r"]


def test_record_schema(results):
    record = harness.run(tiny(["trainer.epochs=2"], results))
    run_dir = RunDir.for_config(tiny(["trainer.epochs=2"], results)).path
    assert record["run_dir"] == str(run_dir)
    on_disk = json.loads((run_dir / "record.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert list(on_disk)[-1] == "status" and on_disk["status"] == "finished"
    expected = {
        "dataset": str,
        "backbone": str,
        "loss": str,
        "regularizer": str,
        "seed": int,
        "config_hash": str,
        "selected_epoch": int,
        "epochs": int,
        "selection/metric": str,
        "val/map@r": float,
        "test/map@r": float,
        "test/recall@1": float,
        "test/recall@8": float,
        "test/r_precision": float,
        "test/nmi": float,
        "init/test/map@r": float,
        "raw/test/map@r": float,
        "diag/test/coding_rate": float,
        "git/dirty": (bool, type(None)),
        "versions/torch": str,
        "host": str,
        "device": str,
        "wall_time_s": float,
        "train_time_s": float,
        "overrides": list,
        "config/seed": int,
        "config/loss.name": str,
    }
    for key, kind in expected.items():
        assert isinstance(on_disk[key], kind), key
    assert on_disk["dataset"] == "digits" and on_disk["regularizer"] == "none"
    assert 1 <= on_disk["selected_epoch"] <= 2
    # the raw-pixel baseline of the issue (cosine on raw pixels, classes 5-9)
    assert on_disk["raw/test/recall@1"] == pytest.approx(0.991, abs=5e-4)
    assert on_disk["raw/test/map@r"] == pytest.approx(0.606, abs=5e-4)
    for name in (
        "config.yaml",
        "overrides.txt",
        "epochs.jsonl",
        "run.log",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (run_dir / name).exists(), name


def test_run_dir_is_a_function_of_config_and_seed(tmp_path):
    a = RunDir.for_config(tiny(["seed=1"], tmp_path)).path
    assert a == RunDir.for_config(tiny(["seed=1", "trainer.progress=true"], tmp_path)).path
    assert a != RunDir.for_config(tiny(["seed=2"], tmp_path)).path
    assert a != RunDir.for_config(tiny(["seed=1", "optimizer.lr=0.01"], tmp_path)).path
    assert a.name.endswith("seed1") and a.parent.name == "digits"


def test_a_finished_run_is_skipped(results):
    cfg = tiny([], results)
    first = harness.run(cfg)
    mtime = (RunDir.for_config(cfg).path / "record.json").stat().st_mtime_ns
    again = harness.run(cfg)
    assert again == json.loads(json.dumps(first))
    assert (RunDir.for_config(cfg).path / "record.json").stat().st_mtime_ns == mtime


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    whole = harness.run(tiny([], tmp_path / "whole", epochs=5))

    def interrupt(epoch, _metrics):
        if epoch == 3:
            raise KeyboardInterrupt

    cfg = tiny([], tmp_path / "cut", epochs=5)
    with pytest.raises(KeyboardInterrupt):
        harness.run(cfg, on_evaluate=interrupt)
    assert records.read_record(RunDir.for_config(cfg).path)["status"] == "failed"
    resumed = harness.run(cfg)
    assert resumed["attempts"] == 2
    for key in [k for k in whole if k.startswith(("val/", "test/", "diag/"))] + ["selected_epoch"]:
        assert resumed[key] == whole[key], key
    epochs = records.read_epochs(resumed["run_dir"])
    assert [r["epoch"] for r in epochs] == [0, 1, 2, 3, 4, 5]


def test_load_run_embeds_new_data_like_the_evaluation(results):
    import numpy as np

    from harness.data.digits import load_digits
    from harness.evaluation import retrieval_metrics

    record = harness.run(tiny([], results, epochs=2))
    loaded = harness.load_run(record["run_dir"])
    test = load_digits([0, 1, 2, 3, 4], [5, 6, 7, 8, 9], val_classes=[3, 4]).test.query
    emb = loaded.embed(test.inputs.numpy() * 16)  # raw inputs: scikit-learn's 0-16 intensities, scaled by the loader
    assert emb.shape == (len(test), 64)
    assert np.array_equal(loaded.embed_dataset(test), emb)  # a split of the dataset is already preprocessed
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert retrieval_metrics(emb, test.labels)["map@r"] == pytest.approx(record["test/map@r"], abs=1e-6)


def test_rerun_trains_a_finished_run_again_from_scratch(results):
    cfg = tiny([], results, epochs=2)
    first = harness.run(cfg)
    again = harness.run(tiny(["trainer.rerun=true"], results, epochs=2))
    assert again["run_dir"] == first["run_dir"]  # rerun is not part of the run's identity
    assert again["attempts"] == 1  # from scratch: not a resumed second attempt
    log = (Path(again["run_dir"]) / "run.log").read_text()
    assert log.count("epoch 2/2 ") == 2  # both commands trained the last epoch
    assert [row["epoch"] for row in records.read_epochs(again["run_dir"])] == [0, 1, 2]  # rewritten, not appended
    assert again["test/map@r"] == first["test/map@r"]
