"""A sweep as a lab browses it: a digits multirun logged to all four trackers reads back from each tracker's own
reader as one group, with run names that say the swept values; TensorBoard's HParams data holds every run; the
selected checkpoint is an artifact where the tracker has artifacts (opt-in ``log_model``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from harness.tracking.mlflow_logger import GROUP_TAG, KEY_TAG
from harness.tracking.wandb_file import offline_runs, raw_records, read_run

WEIGHTS = ("0.1", "0.3")
NAMES = {f"digits · multi_similarity + antico_pair w={w} · seed 0" for w in WEIGHTS}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    """An inline grid (no sweep file): regularizer.antico_pair.weight=0.1,0.3, one epoch of 2 steps each."""
    results = tmp_path_factory.mktemp("results")
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "MLFLOW_TRACKING_URI")}
    command = [
        sys.executable,
        "run.py",
        "-m",
        "logger=[tensorboard,wandb,mlflow,csv]",
        "logger.mlflow.log_model=true",
        "logger.wandb.log_model=true",
        "regularizer=antico_pair",
        f"regularizer.antico_pair.weight={','.join(WEIGHTS)}",
        "trainer.epochs=1",
        "sampler.batches_per_epoch=2",
        "trainer.progress=false",
        "eval.utilization=false",
        f"paths.results={results}",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [multirun] = (results / "multirun").iterdir()
    return results, f"grid {multirun.name}"


def run_dirs(results: Path) -> list:
    return sorted((results / "runs" / "digits").iterdir())


def test_mlflow_nests_the_sweep_under_one_parent_with_named_runs_and_checkpoints(sweep, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks this of a reader of its file store
    results, group = sweep
    client = MlflowClient(tracking_uri=(results / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("dml-harness")
    [parent] = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group}'")
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert parent.info.run_name == group and parent.data.tags["sweep"] == group
    assert {r.info.run_name for r in children} == NAMES
    assert {r.data.tags["sweep"] for r in children} == {group} and all(KEY_TAG in r.data.tags for r in children)
    for run in children:
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/best.pt"]


def test_wandb_groups_every_run_of_an_inline_grid_with_job_type_and_names(sweep):
    from wandb.proto import wandb_internal_pb2 as pb

    results, group = sweep
    seen = set()
    for run_dir in run_dirs(results):
        [file] = offline_runs(run_dir)
        run = read_run(file)["run"]
        assert run.run_group == group and run.job_type == "method"
        seen.add(run.display_name)
        kinds = [pb.Record.FromString(r) for r in raw_records(file)]
        artifacts = [r.artifact for r in kinds if r.WhichOneof("record_type") == "artifact"]
        assert [(a.type, a.name) for a in artifacts] == [("model", f"model-{run.run_id}")]
    assert seen == NAMES


def test_tensorboard_hparams_hold_every_run_of_the_sweep(sweep):
    """As ``tensorboard --logdir results/`` loads it: the HParams plugin's data for each run."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    results, group = sweep
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(results))
    multiplexer.Reload()
    content = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    sessions = {}
    for run, tags in content.items():
        if metadata.SESSION_START_INFO_TAG in tags:
            info = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
            sessions[run] = {k: v.string_value or v.number_value for k, v in info.hparams.items()}
        assert metadata.EXPERIMENT_TAG in tags, run  # each run names its metrics (test/*, val/*)
    assert len(sessions) == len(run_dirs(results)) == len(WEIGHTS)
    assert {s["regularizer.antico_pair.weight"] for s in sessions.values()} == {0.1, 0.3}
    assert {s["group"] for s in sessions.values()} == {group}
    assert {(s["dataset"], s["loss"], s["regularizer"]) for s in sessions.values()} == {
        ("digits", "multi_similarity", "antico_pair")
    }


def test_csv_tables_are_in_every_run_of_the_sweep(sweep):
    import pandas as pd

    results, _ = sweep
    for run_dir in run_dirs(results):
        assert pd.read_csv(run_dir / "metrics.csv")["epoch"].tolist() == [0, 1]
        assert "test/map@r" in pd.read_csv(run_dir / "results.csv")
