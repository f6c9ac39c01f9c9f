"""Bad input: one line naming the fix, a non-zero exit, never a traceback, nothing that looks finished."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose_cfg, exit_code
from test_datasets import make_folder_tree

from harness.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "classes,expected",
    [
        (("apple",), "has 1 class folder(s) (apple); metric learning needs at least 4 disjoint classes"),
        (("apple", "bear", "car"), "has 3 class folder(s)"),
    ],
)
def test_an_image_folder_with_too_few_classes_does_not_suggest_lowering_val_fraction(tmp_path, classes, expected):
    from harness.config import instantiate

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


# ----------------------------------------------------------------------------------------------- config values
@pytest.mark.parametrize(
    "override,expected",
    [
        ("trainer.epochs=abc", "trainer.epochs='abc' must be an integer >= 1, e.g. trainer.epochs=30"),
        ("trainer.epochs=1.5", "trainer.epochs=1.5 must be an integer >= 1"),
        ("seed=abc", "seed='abc' must be an integer >= 0 and <= 4294967295, e.g. seed=0"),
        ("optimizer.lr=nan", "optimizer.lr=nan must be a positive finite number, e.g. optimizer.lr=0.001"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 must be a positive finite number"),
        ("optimizer.lr=inf", "optimizer.lr=inf must be a positive finite number"),
        ("eval.k=[]", "eval.k=[] must list positive integers, e.g. eval.k=[1,2,4,8]"),
        ("eval.k=[1,abc]", "eval.k=[1, 'abc'] must list positive integers"),
        ("trainer.device=tpu", "trainer.device='tpu' is not a device; use auto, cpu, cuda or cuda:N"),
        ("sampler.batches_per_epoch=0", "sampler.batches_per_epoch=0 must be an integer >= 1 (or null)"),
        ("sampler.batches_per_epoch=-3", "sampler.batches_per_epoch=-3 must be an integer >= 1 (or null)"),
        ("trainer.checkpoint_every=0", "trainer.checkpoint_every=0 must be an integer >= 1"),
        ("sampler.m=abc", "sampler.m='abc' must be an integer >= 1"),
        ("selection.metric=recall@abc", "use recall@K with K in eval.k"),
        ("trainer.amp=fp8", "trainer.amp='fp8' must be auto, bf16, fp16 or off"),
        ("seed=4294967296", "seed=4294967296 must be an integer >= 0 and <= 4294967295"),  # numpy's seed range
        ("seed=99999999999999999999", "must be an integer >= 0 and <= 4294967295"),
        ("trainer.devices=abc", "trainer.devices='abc' must be an integer >= 1, e.g. trainer.devices=1"),
        ("trainer.nodes=0", "trainer.nodes=0 must be an integer >= 1"),
        ("regularizer=antico_pair regularizer.antico_pair.weight=nan", "antico_pair.weight=nan must be a non-negative"),
        ("regularizer=nir regularizer.nir.weight=-1", "regularizer.nir.weight=-1 must be a non-negative finite"),
        ("regularizer=antico_pair regularizer.antico_pair.eps=nan", "regularizer.antico_pair.eps=nan is not a value"),
        ("loss.weight=inf", "loss.weight=inf must be a non-negative finite number"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction=1.5 must be in [0, 1)"),  # digits used to ignore it
        ("head.pooling=mean", "head.pooling='mean' is unknown; use one of avg, max"),
        # failures that used to leave an empty run directory behind (identity.json and .lock)
        ("eval.metric=cosine", "eval.metric='cosine' is unknown; use ip or l2 (ip is cosine)"),
        ("sampler.m=7", "sampler.m=7 does not divide sampler.batch_size=60; use a multiple of m"),
    ],
)
def test_bad_values_are_one_line_naming_the_fix_before_anything_is_written(override, expected, results):
    from conftest import tiny

    import harness

    with pytest.raises(ConfigError) as err:
        harness.run(tiny(override.split(" "), results))
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not list(results.iterdir())  # not even a run directory


@pytest.mark.parametrize("overrides", [["trainer.device=cuda"], ["trainer.devices=2", "trainer.device=cuda"]])
def test_an_explicit_cuda_device_without_a_gpu_is_one_line_before_any_process_or_directory(overrides, results):
    """Checked where the run trains (one line, not one traceback per rank), never where it is only planned."""
    import torch
    from conftest import tiny

    import harness
    from harness.config import validate_config

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="^trainer.device=cuda but no CUDA device is available here; use"):
        harness.run(tiny(overrides, results))
    assert not list(results.iterdir())
    validate_config(tiny(overrides), here=False)  # a search driver on a login node plans it without a GPU


def test_mixed_precision_on_an_explicit_cpu_is_said_once_and_is_the_amp_off_run(caplog):
    from conftest import tiny

    from harness.config import validate_config
    from harness.rundir import RunDir

    asked = tiny(["trainer.amp=fp16", "trainer.device=cpu"])
    with caplog.at_level("WARNING", logger="harness.config.validation"):
        validate_config(asked)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("trainer.amp=fp16 is off on trainer.device=cpu") and "trainer.amp=off" in line
    amp_off = tiny(["trainer.amp=off", "trainer.device=cpu"])
    validate_config(amp_off)
    assert RunDir.for_config(asked).path == RunDir.for_config(amp_off).path  # the amp-off run, its directory
    planned = tiny(["trainer.amp=fp16"])  # device=auto: decided where the run trains, never on a login node
    validate_config(planned, here=False)
    assert planned.trainer.amp == "fp16" and RunDir.for_config(planned).path != RunDir.for_config(amp_off).path


# ----------------------------------------------------------------------------------------------- Recall@K
@pytest.fixture(scope="module")
def run_with_k_1000(tmp_path_factory):
    """One real digits run asking Recall@1000 of splits of a few hundred items (SOP's K on a small tree)."""
    from conftest import tiny

    import harness

    results = tmp_path_factory.mktemp("results")
    cfg = tiny(["eval.k=[1,1000]", "sampler.batches_per_epoch=1", "eval.nmi=false", "eval.utilization=false"], results)
    return harness.run(cfg)


def test_a_recall_at_k_beyond_the_split_is_left_out_with_one_line_never_a_silent_one(run_with_k_1000):
    from pathlib import Path

    record = run_with_k_1000
    assert record["status"] == "finished" and "test/recall@1" in record and "val/recall@1" in record
    assert not [k for k in record if k.endswith("recall@1000")]  # was 1.0: every item retrieved
    said = [line for line in (Path(record["run_dir"]) / "run.log").read_text().splitlines() if "left out" in line]
    assert len(said) == 2  # once for the validation split, once for the test split: not once per epoch
    assert all("recall@1000 left out" in line and "lower eval.k" in line for line in said)


def test_selection_by_a_recall_at_k_the_validation_split_cannot_measure_is_refused():
    from conftest import tiny

    from harness.config import complete_config
    from harness.training.build import build_data

    cfg = tiny(["eval.k=[1,1000]", "selection.metric=recall@1000"])
    with pytest.raises(ConfigError, match="selection.metric=recall@1000 cannot be measured: a validation query"):
        complete_config(cfg, build_data(cfg.dataset)[0])


# ----------------------------------------------------------------------------------------------- typos
@pytest.mark.parametrize(
    "override,expected",
    [
        ("trainer.epoch=3", "trainer.epoch=3: trainer.epoch is not a key of trainer; did you mean trainer.epochs?"),
        ("+trainer.epoch=3", "did you mean trainer.epochs? (a new key on purpose: ++trainer.epoch=3)"),
        ("los=triplet", "los=triplet: los is not a key of the config; did you mean loss=triplet?"),
        ("+los=triplet", "+los=triplet: los is not a config group or key; did you mean loss?"),
        ("+seeds=3", "did you mean seed?"),
        ("regularizer.antico_pair.epz=0.1", "did you mean regularizer.antico_pair.eps?"),
        ("regularizer=[antico_pair,nri]", "regularizer has no option 'nri'; did you mean nir? regularizer options: "),
        ("loss=tripplet", "loss has no option 'tripplet'; did you mean triplet?"),
        ("-m", "cannot parse the overrides"),
        ("dataset=digits,cub", "dataset has no option 'cub'; did you mean cub200?"),  # each choice of a sweep
        ("trainer.foo=1", "trainer has amp, channels_last, checkpoint_every"),  # nothing close: the keys there
    ],
)
def test_a_mistyped_key_or_option_is_one_line_naming_the_closest(override, expected):
    from harness.config.overrides import check_overrides

    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["++trainer.epoch=3"],  # a new key on purpose
        ["+db.password=${oc.env:DB_PASSWORD}", "+note=x"],  # the user's own new top-level keys
        ["++backbone.model_name=resnet18", "++dataset.transform.size=32"],  # what tests/test_reproduce.py adds
        ["+dataset.augment={_target_:harness.data.augment.BatchAugment}", "regularizer=null", "~trainer.grad_clip"],
        ["seed=0,1,2", "regularizer=[antico_pair,nir]", "optimizer.lr=tag(log, interval(1e-4, 1e-2))"],
        ["hydra/launcher=slurm", "hydra.sweeper.n_trials=2", "hydra.launcher.gpus_per_node=4"],
        ["dataset=csv", "dataset.root=/data", "dataset.csv=t.csv", "logger=[wandb,mlflow]", "logger.wandb.mode=online"],
    ],
)
def test_every_valid_command_line_passes_the_key_check(overrides):
    from harness.config.overrides import check_overrides

    check_overrides(overrides)


@pytest.mark.parametrize("group", ["sweep", "experiment", "dataset", "loss", "regularizer", "backbone", "logger"])
def test_every_option_of_a_group_and_each_sweeps_own_parameters_pass_the_key_check(group):
    from conftest import group_options

    from harness.config.overrides import check_overrides, conf_tree

    options = conf_tree().groups[group]
    assert set(group_options(group)) <= set(options)  # nested options too (sweep=omniglot_tune/nir)
    for option in options:
        check_overrides([f"{group}={option}"])


def test_a_sweep_file_with_broken_yaml_is_one_line_naming_the_file_line_and_column(tmp_path):
    from harness.config.overrides import check_overrides

    conf = tmp_path / "conf"
    (conf / "sweep").mkdir(parents=True)
    (conf / "config.yaml").write_text("seed: 0\n")
    (conf / "sweep" / "mine.yaml").write_text("hydra:\n  sweeper:\n    params:\n      seed: [0, 1\n")
    with pytest.raises(ConfigError) as err:
        check_overrides(["sweep=mine"], conf)
    assert str(err.value).startswith("sweep=mine: conf/sweep/mine.yaml is not valid YAML (line 5, column 1")
    assert "\n" not in str(err.value)


def test_the_commands_answer_bad_input_in_one_line_without_a_traceback(results):
    import subprocess
    import sys

    from conftest import REPO

    for override, line in [
        ("trainer.epochs=abc", "error: trainer.epochs='abc' must be an integer >= 1, e.g. trainer.epochs=30"),
        (  # a typo: answered before Hydra composes (it would advise +trainer.epoch=3, which runs the defaults)
            "trainer.epoch=3",
            "error: trainer.epoch=3: trainer.epoch is not a key of trainer; did you mean trainer.epochs? "
            "(a new key on purpose: ++trainer.epoch=3)",
        ),
    ]:
        single = subprocess.run(
            [sys.executable, "run.py", f"paths.results={results}", override],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert single.returncode == 2 and single.stderr.strip() == line and not list(results.iterdir())
    multi = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            f"paths.results={results}",
            "seed=abc,-1",
            "trainer.epochs=1",
            "sampler.batches_per_epoch=1",
            "eval.nmi=false",
            "eval.utilization=false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert multi.returncode == 1 and "Traceback" not in multi.stdout + multi.stderr
    last = multi.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 2 jobs failed (first: #0") and "seed='abc' must be an integer" in last
    assert "summary.json" in last


# ----------------------------------------------------------------------------------------------- the results disk
def on_small_disk(tmp_path, options: str, *overrides):
    """run.py with paths.results on a private tmpfs mounted with ``options`` (a mount namespace of its own:
    nothing is mounted outside the command). Skips where mount namespaces are not allowed."""
    import shlex
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no mount namespace here (unshare -m needs root or user namespaces): cannot make a small disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    cmd = " ".join(
        shlex.quote(a)
        for a in [
            sys.executable,
            "run.py",
            f"paths.results={disk}",
            "trainer.epochs=1",
            "sampler.batches_per_epoch=1",
            "eval.nmi=false",
            *overrides,
        ]
    )
    where = shlex.quote(str(disk))
    script = (
        f"mount -t tmpfs -o {options} tmpfs {where} && {cmd}; rc=$?; "
        f"find {where} -name record.json -exec grep -h '\"status\"' {{}} +; exit $rc"
    )
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_read_only_results_disk_is_one_line(tmp_path):
    proc = on_small_disk(tmp_path, "ro,size=1m")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip()
    assert line.startswith("error: cannot write ") and "Read-only file system" in line
    assert line.endswith("set paths.results to a folder you can write") and "\n" not in line


def test_a_full_results_disk_is_one_line_and_leaves_no_finished_record(tmp_path):
    proc = on_small_disk(tmp_path, "size=256k")  # room for the run's files, not for its checkpoint
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip()
    assert line.startswith("error: no space left on the disk of ") and "\n" not in line
    assert "the run resumes from its last checkpoint" in line and "Traceback" not in proc.stdout
    assert '"status": "finished"' not in proc.stdout  # a failed record, or none where even that did not fit


def test_the_search_report_command_answers_a_missing_or_damaged_study_in_one_line(tmp_path, capsys):
    from harness.search.__main__ import main

    assert exit_code(main, [str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    study = tmp_path / "s"
    study.mkdir()
    (study / "search.yaml").write_text("study_name: [broken")
    assert exit_code(main, [str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is damaged" in err and "\n" not in err
    (study / "search.yaml").write_text(
        "study_name: s\nstudy_dir: x\nobjective: val/map@r\ndirection: maximize\n"
        "space: {}\nfixed: []\nstorage: sqlite\n"
    )
    assert exit_code(main, [str(study)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no study 's'" in err and "\n" not in err


def test_a_crash_inside_a_run_names_its_error_file_in_one_line(capsys):
    from harness.cli import entry_point

    crash = RuntimeError("CUDA error: an illegal memory access\nwas encountered")
    crash.error_file = "/results/runs/x/error.txt"
    with pytest.raises(SystemExit) as code, entry_point():
        raise crash
    assert code.value.code == 1
    assert capsys.readouterr().err == (
        "error: RuntimeError: CUDA error: an illegal memory access was encountered "
        "(traceback: /results/runs/x/error.txt)\n"
    )
    with pytest.raises(SystemExit) as code, entry_point():  # a bug outside a run: its traceback in a file named
        raise ValueError("a bug before the run directory")
    err = capsys.readouterr().err
    assert code.value.code == 1 and err.count("\n") == 1 and err.startswith("error: ValueError: a bug before")
    where = err.rsplit("(traceback: ", 1)[1].rstrip(")\n")
    assert "Traceback" in Path(where).read_text() and 'raise ValueError("a bug before' in Path(where).read_text()
    Path(where).unlink()


# ----------------------------------------------------------------------------------------------- files
def test_evaluate_on_an_npz_archive_names_its_arrays_in_one_line(tmp_path, capsys):
    import numpy as np

    from harness.evaluate import main

    np.savez(tmp_path / "run.npz", embeddings=np.ones((4, 2)), labels=np.arange(4))
    np.save(tmp_path / "l.npy", np.arange(4) % 2)
    assert exit_code(main, [str(tmp_path / "run.npz"), str(tmp_path / "l.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'run.npz'} is an .npz archive (arrays: embeddings, labels); give one")
    assert "\n" not in err


def test_evaluate_warns_that_ties_decide_the_ranking_of_identical_embeddings(tmp_path, capsys):
    import json

    import numpy as np

    from harness.evaluate import main

    np.save(tmp_path / "e.npy", np.zeros((12, 4), np.float32))
    np.save(tmp_path / "l.npy", np.arange(12) % 3)
    assert exit_code(main, [str(tmp_path / "e.npy"), str(tmp_path / "l.npy"), "--k", "1,100", "--no-nmi"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "warning: all 12 embeddings are the same vector (all zero?): every distance ties, so the order of the "
        "items, not the model, decides each ranking",
        "warning: recall@100 left out: a query retrieves among the 11 other queries; give a smaller --k",
    ]
    result = json.loads(out)
    assert "recall@1" in result and "recall@100" not in result


# ----------------------------------------------------------------------------------------------- CSV data
def csv_table(tmp_path, change=None):
    from test_datasets import make_oml

    root, df = make_oml(tmp_path / "oml", boxes=True)
    if change is not None:
        df = change(df.copy())
        df.to_csv(root / "df.csv", index=False)
    return root


def repeat_row(i, split=None):
    import pandas as pd

    def change(df):
        row = df.iloc[[i]].copy()
        if split:
            row["split"], row["label"] = split, 99  # another label too: only the image gives it away
            row["is_query"] = row["is_gallery"] = True
        return pd.concat([df, row], ignore_index=True)

    return change


@pytest.mark.parametrize(
    "change,expected",
    [
        (repeat_row(0), "row 38 repeats the image of row 2 ("),
        (repeat_row(0, split="validation"), "rows 2 and 38 list the same image"),
        (lambda df: df.assign(x_2=df.x_2.where(df.x_2.isna(), 500)), "x_2=500, y_1=5, y_2=35 beyond its image"),
    ],
    ids=["duplicate row", "one image in two splits", "box beyond the image"],
)
def test_a_csv_table_with_a_repeated_image_or_a_box_beyond_it_is_refused_in_one_line(tmp_path, change, expected):
    from test_datasets import load

    root = csv_table(tmp_path, change)
    with pytest.raises(DataError) as err:
        load("csv", root)
    assert expected in str(err.value) and "\n" not in str(err.value)
    if "two splits" in str(err.value):
        assert "a test image seen in training" in str(err.value)


def test_a_csv_class_is_named_by_its_csv_label_in_errors(tmp_path):
    from conftest import compose_cfg

    from harness.training.build import build

    root = csv_table(tmp_path)
    cfg = compose_cfg(
        ["dataset=csv", f"dataset.root={root}", "dataset.val_classes=[1,2]", "backbone=small_cnn", "sampler.m=5",
         "sampler.batch_size=10", "dataset.transform.size=16", "dataset.transform.resize=16", "head.embed_dim=8"]
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        build(cfg)
    assert str(err.value).startswith("training class 3 has 4 samples, fewer than sampler.m=5")  # trains as class 0


# ----------------------------------------------------------------------------------------------- trackers
def test_an_mlflow_server_that_never_answers_costs_one_warning_and_seconds_not_minutes(tmp_path, caplog, monkeypatch):
    """A server that accepts the connection and never answers (the worst case: a refused one answers at once)."""
    import socket
    import time

    from harness.tracking import Trackers
    from harness.tracking.mlflow_logger import MLflowLogger

    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        uri = f"http://u:hunter2@127.0.0.1:{server.getsockname()[1]}"
        trackers = Trackers({"mlflow": MLflowLogger(tracking_uri=uri)})
        started = time.monotonic()
        with caplog.at_level("WARNING", logger="harness.tracking"):
            trackers.start(tmp_path, {"seed": 0}, {}, None)
            for epoch in (1, 2):
                trackers.log_epoch({"epoch": epoch, "train/loss": 1.0})
            trackers.finish("finished")
        waited = time.monotonic() - started
    assert trackers.failed == {"mlflow"} and waited < 60  # MLflow's own retries: 258 s
    [line] = [r.getMessage() for r in caplog.records]
    assert "does not answer within 5 s" in line and "the run goes on without it" in line and "hunter2" not in line


# ----------------------------------------------------------------------------------------------- disks
DISK_COMMANDS = r"""
import contextlib, io, json, sys
sys.path.insert(0, "tests")
from conftest import exit_code
from harness.inspect.__main__ import main as inspect_main
from harness.tables.__main__ import main as tables_main

for root in sys.argv[1:]:
    run_dir = next(p for p in __import__("pathlib").Path(root).rglob("record.json")).parent
    for name, main, argv in [("tables", tables_main, [root, "--no-plots"]),
                             ("inspect", inspect_main, [str(run_dir), "--map", "pca"])]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = exit_code(main, argv)
        print(json.dumps({"root": root, "command": name, "code": code, "err": err.getvalue()}))
"""


def in_mount_namespace(script: str, timeout: int = 300):
    """``sh -c script`` in a mount namespace of its own (the tmpfs it mounts vanish with it); skips where mount
    namespaces are not allowed."""
    import shutil
    import subprocess

    from conftest import REPO

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("no mount namespace here (unshare -m needs root or user namespaces): cannot make a small disk")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_tables_and_inspect_on_a_read_only_or_full_disk_answer_in_one_line(run_with_k_1000, tmp_path):
    import json
    import shlex
    import sys
    from pathlib import Path

    source = Path(run_with_k_1000["run_dir"]).parents[2]  # the results folder of one finished run
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir(), full.mkdir()
    q = shlex.quote
    proc = in_mount_namespace(
        f"mount -t tmpfs -o size=16m tmpfs {q(str(ro))} && cp -r {q(str(source))}/. {q(str(ro))}/ && "
        f"mount -o remount,ro {q(str(ro))} && "
        f"mount -t tmpfs -o size=16m tmpfs {q(str(full))} && cp -r {q(str(source))}/. {q(str(full))}/ && "
        f"(dd if=/dev/zero of={q(str(full / 'fill'))} bs=64k 2>/dev/null; true) && "
        f"{q(sys.executable)} -c {q(DISK_COMMANDS)} {q(str(ro))} {q(str(full))}"
    )
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 4, proc.stderr[-3000:]
    for answer in answers:
        *before, line = answer["err"].strip().splitlines()
        assert answer["code"] == 2 and "Traceback" not in answer["err"], answer
        assert all(b.startswith("WARNING harness.tables.load: table index not written") for b in before), answer
        expected = "cannot write " if answer["root"] == str(ro) else "no space left on the disk of "
        assert line.startswith(f"error: {expected}") and line.endswith("give --out a folder on a disk you can write")
        assert str(ro if answer["root"] == str(ro) else full) in line or "the output folder" in line


def test_a_grid_on_a_read_only_or_full_results_disk_is_one_line(tmp_path):
    import shlex
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    q = shlex.quote
    grid = " ".join(
        q(a)
        for a in [sys.executable, "run.py", "-m", f"paths.results={disk}", "trainer.epochs=1", "seed=0,1"]
        + ["sampler.batches_per_epoch=1", "eval.nmi=false", "eval.utilization=false"]
    )
    proc = in_mount_namespace(
        f"mount -t tmpfs -o ro,size=1m tmpfs {q(str(disk))} && {grid}; echo rc=$?; umount {q(str(disk))}; "
        f"mount -t tmpfs -o size=32k tmpfs {q(str(disk))} && {grid}; echo rc=$?"
    )
    assert [line for line in proc.stdout.splitlines() if line.startswith("rc=")] == ["rc=2", "rc=2"], proc.stderr[
        -3000:
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 2
    assert lines[0].startswith(f"error: cannot write {disk}/multirun (Read-only file system); set paths.results to")
    assert lines[1].startswith(f"error: no space left on the disk of {disk}/multirun/")
    assert all(line.endswith("run the sweep again (finished runs are skipped)") for line in lines)
