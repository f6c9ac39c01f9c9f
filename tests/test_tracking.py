"""Experiment trackers against their real clients: what a run sends is read back with each tracker's own reader
(TensorBoard's EventAccumulator, MlflowClient, W&B's offline run file), each step once across a restart, and a
tracker that fails costs one warning, never the run."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, compose_cfg, group_options, tiny
from hydra.utils import instantiate
from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.redact import redact
from harness.rundir import records
from harness.rundir.run_dir import RunDir
from harness.tracking import Trackers, build_trackers, run_key, run_tags
from harness.tracking.mlflow_logger import KEY_TAG
from harness.tracking.naming import SweepContext, varying_keys
from harness.tracking.trackers import read_marks
from harness.tracking.wandb_file import offline_runs, read_run

TRACKERS = [name for name in group_options("logger") if name != "none"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One real digits run of 3 epochs: its epochs.jsonl rows and record are what the trackers receive."""
    from harness.training.task import run

    results = tmp_path_factory.mktemp("results")
    record = run(tiny(epochs=3, results=results))
    return Path(record["run_dir"])


@pytest.fixture
def run_copy(finished_run, tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after the test: the adapter sets it
    target = tmp_path / "results" / "runs" / "digits" / finished_run.name
    shutil.copytree(finished_run, target)
    return target


def trackers_for(names, run_dir: Path) -> tuple[Trackers, dict]:
    cfg = compose_cfg([f"logger=[{','.join(names)}]"], results=run_dir.parents[2])
    config = redact(OmegaConf.to_container(cfg, resolve=True))
    return build_trackers(cfg.logger, instantiate), config


def picture(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return path


# ------------------------------------------------------------------------------------------------ readers
def tensorboard_scalars(run_dir: Path) -> tuple[dict, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    return scalars, acc.Tags()


def mlflow_run(run_dir: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir.parents[2] / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("dml-harness")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KEY_TAG}` != ''")
    return client, runs  # the runs, not the parent runs that stand for their sweeps


def series(rows, key) -> list:
    return [(r["epoch"], r[key]) for r in rows if key in r]


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", TRACKERS)
def test_each_tracker_receives_the_rows_record_config_and_pictures(name, run_copy):
    rows, record = records.read_epochs(run_copy), records.read_record(run_copy)
    trackers, config = trackers_for([name], run_copy)
    tags = run_tags(config, ["sweep=digits_ablation", "seed=0"], "0123abc")
    trackers.start(run_copy, config, tags, None)
    for row in rows:
        trackers.log_epoch(row)
    trackers.log_record(record)
    trackers.log_images([picture(run_copy / "pictures" / "retrieval_grid.png")], step=3)
    trackers.finish("finished")
    assert not trackers.failed
    assert records.read_epochs(run_copy) == rows  # the JSON files stay as the run wrote them
    expected_loss, expected_map = series(rows, "train/loss"), series(rows, "val/map@r")
    assert [e for e, _ in expected_loss] == [1, 2, 3] and expected_map

    if name == "tensorboard":
        scalars, tags_seen = tensorboard_scalars(run_copy)
        assert scalars["train/loss"] == [(e, pytest.approx(v, rel=1e-6)) for e, v in expected_loss]
        assert scalars["val/map@r"] == [(e, pytest.approx(v, rel=1e-6)) for e, v in expected_map]
        assert scalars["init/test/map@r"] == [(0, pytest.approx(record["init/test/map@r"], rel=1e-6))]
        assert [s for s, _ in scalars["test/map@r"]] == [record["selected_epoch"]]
        assert "lr/backbone" in scalars and "time/train_s" in scalars
        assert "pictures/retrieval_grid" in tags_seen["images"]
        assert any(t.startswith("config") for t in tags_seen["tensors"])
    elif name == "mlflow":
        client, runs = mlflow_run(run_copy)
        assert len(runs) == 1
        info, data = runs[0].info, runs[0].data
        history = client.get_metric_history(info.run_id, "val/map_at_r")
        assert [(m.step, m.value) for m in history] == [(e, pytest.approx(v)) for e, v in expected_map]
        assert data.metrics["test/map_at_r"] == pytest.approx(record["test/map@r"])
        assert data.params["loss._target_"] == config["loss"]["_target_"]
        assert data.tags["sweep"] == "digits_ablation" and data.tags["git_commit"] == "0123abc"
        assert info.status == "FINISHED" and info.run_name == tags["name"] == "digits · multi_similarity · seed 0"
        [parent] = client.search_runs([info.experiment_id], filter_string="tags.`harness.group` = 'digits_ablation'")
        assert data.tags["mlflow.parentRunId"] == parent.info.run_id and parent.info.run_name == "digits_ablation"
        assert [a.path for a in client.list_artifacts(info.run_id, "pictures")] == ["pictures/retrieval_grid.png"]
    elif name == "wandb":
        files = offline_runs(run_copy)
        assert len(files) == 1 and files[0].name == f"run-{run_key(run_copy)}.wandb"
        run = read_run(files[0])
        from wandb.proto import wandb_internal_pb2 as pb

        from harness.tracking.wandb_file import raw_records

        kinds = [pb.Record.FromString(r).WhichOneof("record_type") for r in raw_records(files[0])]
        assert run["run"] is not None, (kinds, files[0].stat().st_size)
        assert run["run"].run_id == run_key(run_copy) and run["run"].run_group == "digits_ablation"
        assert "sweep=digits_ablation" in run["run"].tags and "seed=0" in run["run"].tags
        steps = [h["_step"] for h in run["history"] if "train/loss" in h]
        assert steps == [1, 2, 3]
        assert [(h["_step"], h["val/map@r"]) for h in run["history"] if "val/map@r" in h] == expected_map
        assert run["summary"]["test/map@r"] == pytest.approx(record["test/map@r"])
        assert run["summary"]["status"] == "finished"
        image = next(h for h in run["history"] if "pictures/retrieval_grid/path" in h)
        assert image["_step"] == 4  # W&B steps only go forward: the step after the last epoch
        assert image["pictures/retrieval_grid/_type"] == "image-file"
        assert (files[0].parent / "files" / image["pictures/retrieval_grid/path"]).is_file()
    elif name == "csv":
        import pandas as pd

        table = pd.read_csv(run_copy / "metrics.csv")
        assert table["epoch"].tolist() == [0, 1, 2, 3]
        assert table["val/map@r"].dropna().tolist() == pytest.approx([v for _, v in expected_map])
        assert pd.read_csv(run_copy / "results.csv")["test/map@r"].iloc[0] == pytest.approx(record["test/map@r"])
    else:
        pytest.fail(f"no reader for tracker {name}: add one to this test")


def test_a_restarted_run_sends_each_step_once_and_fills_what_a_tracker_missed(run_copy):
    """Attempt 1 sent epochs 0-3 but its last checkpoint was epoch 2: attempt 2 (resumed from 2) trains epoch 3
    again and sends it again; every tracker keeps one value per step. A tracker added on resume (csv) receives
    the earlier rows from epochs.jsonl when the first new row arrives."""
    rows = records.read_epochs(run_copy)
    first, config = trackers_for(["tensorboard", "wandb", "mlflow"], run_copy)
    first.start(run_copy, config, {}, None)
    for row in rows:
        first.log_epoch(row)
    first.finish("failed")  # (a kill would not even say so; the marks are on disk either way)

    second, _ = trackers_for(["tensorboard", "wandb", "mlflow", "csv"], run_copy)
    second.start(run_copy, config, {}, resumed_from_epoch=2)
    for row in rows[3:]:
        second.log_epoch(row)
    second.finish("finished")

    expected = [e for e, _ in series(rows, "train/loss")]
    scalars, _ = tensorboard_scalars(run_copy)
    assert [s for s, _ in scalars["train/loss"]] == expected
    client, runs = mlflow_run(run_copy)
    assert len(runs) == 1
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")] == expected
    files = offline_runs(run_copy)
    assert {f.name for f in files} == {f"run-{run_key(run_copy)}.wandb"} and len(files) == 2  # synced as one run
    steps = [h["_step"] for f in files for h in read_run(f)["history"] if "train/loss" in h]
    assert steps == expected
    import pandas as pd

    assert pd.read_csv(run_copy / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3]


def test_a_failing_tracker_warns_once_and_the_others_go_on(run_copy, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there: a server that is down
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    rows = records.read_epochs(run_copy)
    trackers, config = trackers_for(["mlflow", "csv"], run_copy)
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        trackers.start(run_copy, config, {}, None)
        for row in rows:
            trackers.log_epoch(row)
        trackers.log_record(records.read_record(run_copy))
        trackers.finish("finished")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "tracker mlflow failed" in warnings[0].getMessage()
    assert trackers.failed == {"mlflow"}
    import pandas as pd

    assert pd.read_csv(run_copy / "metrics.csv")["epoch"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "name,module,pip",
    [
        ("tensorboard", "tensorboard", "pip install tensorboard"),
        ("wandb", "wandb", "pip install wandb"),
        ("mlflow", "mlflow", "pip install mlflow-skinny"),
    ],
)
def test_a_missing_client_is_one_line_naming_pip_install(name, module, pip, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: the import system finds nothing
    cfg = compose_cfg([f"logger={name}"])
    with pytest.raises(ConfigError, match=pip) as err:
        build_trackers(cfg.logger, instantiate_unwrapped)
    assert "\n" not in str(err.value)


def instantiate_unwrapped(node):
    from harness.config import instantiate as harness_instantiate

    return harness_instantiate(node)


def test_tags_name_the_sweep_study_trial_seed_commit_and_the_swept_values():
    config = {"seed": 3, "search": {"study": "tune_eps", "trial": 7}, "dataset": {"name": "cub200"}}
    config |= {"loss": {"name": "proxy_anchor"}, "regularizer": {"antico_pair": {}}}
    overrides = ["sweep=tune_eps", "regularizer=antico_pair", "regularizer.antico_pair.weight=0.3", "seed=3"]
    overrides += ["paths.results=/tmp/r", "+db.password=hunter2"]
    tags = run_tags(config, overrides, "abc", SweepContext())  # a single run: every value its command chose
    assert tags == {
        "sweep": "tune_eps",
        "study": "tune_eps",
        "trial": "7",
        "seed": "3",
        "git_commit": "abc",
        "swept": "regularizer.antico_pair.weight=0.3 db.password=***",
        "name": "cub200 · proxy_anchor + antico_pair w=0.3 · db.password=*** · seed 3",
    }
    bare = {"seed": 0, "dataset": {"name": "digits"}, "loss": {"name": "triplet"}, "regularizer": None}
    assert run_tags(bare, [], None, SweepContext()) == {"seed": "0", "name": "digits · triplet · seed 0"}
    # an inline grid (python run.py -m loss=a,b) is one group too: its multirun; its name says what varies
    overrides = ["loss=triplet", "arm=baseline", "trainer.epochs=2", "loss.weight=0.5"]
    context = SweepContext("2026-01-02_03-04-05", frozenset(varying_keys([overrides, ["loss.weight=1"]])))
    grid = run_tags(bare, overrides, None, context)
    assert grid["sweep"] == "grid 2026-01-02_03-04-05" and grid["arm"] == "baseline"
    assert grid["name"] == "digits · triplet w=0.5 · arm=baseline trainer.epochs=2 · seed 0"


def test_the_tracker_run_id_follows_the_run_directory(tmp_path):
    a, b = tmp_path / "runs" / "digits" / "x__seed0", tmp_path / "runs" / "digits" / "x__seed1"
    assert run_key(a) == run_key(tmp_path / "runs" / "digits" / ".." / "digits" / "x__seed0")
    assert run_key(a) != run_key(b) and len(run_key(a)) == 16


@pytest.mark.slow
def test_a_killed_and_resumed_run_is_one_tracker_run_with_each_step_once(tmp_path, monkeypatch):
    """The run dies by SIGKILL while writing epoch 3's checkpoint, after epoch 3 went to the trackers; the same
    command resumes from epoch 2 and trains epoch 3 again. Each tracker holds one run with every step once."""
    from test_slurm import KILL_WHILE_SAVING, checkpointed_epoch

    import harness

    for name in ("WANDB_MODE", "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    results, logger = tmp_path / "results", "logger=[tensorboard,wandb,mlflow,csv]"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_WHILE_SAVING.format(kill_at=3),
            logger,
            "trainer.epochs=4",
            f"paths.results={results}",
            "trainer.progress=false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    cfg = tiny([logger], results, epochs=4)
    run_dir = RunDir.for_config(cfg).path
    assert checkpointed_epoch(run_dir) == 2 and read_marks(run_dir)["tensorboard"] == 3

    record = harness.run(cfg)
    assert record["attempts"] == 2 and record["status"] == "finished"
    epochs = [1, 2, 3, 4]
    scalars, _ = tensorboard_scalars(run_dir)
    assert [s for s, _ in scalars["train/loss"]] == epochs
    client, runs = mlflow_run(run_dir)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")] == epochs
    files = offline_runs(run_dir)
    assert len(files) == 2 and {f.name for f in files} == {f"run-{run_key(run_dir)}.wandb"}  # `wandb sync`: one run
    assert [h["_step"] for f in files for h in read_run(f)["history"] if "train/loss" in h] == epochs
    rows = records.read_epochs(run_dir)
    assert [r["epoch"] for r in rows] == [0, *epochs]
    import pandas as pd

    assert pd.read_csv(run_dir / "metrics.csv")["train/loss"].dropna().tolist() == pytest.approx(
        [r["train/loss"] for r in rows[1:]]
    )
