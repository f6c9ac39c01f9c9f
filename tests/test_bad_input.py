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
        ("seed=abc", "seed='abc' must be an integer >= 0, e.g. seed=0"),
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
    ],
)
def test_bad_values_are_one_line_naming_the_fix_before_anything_is_written(override, expected, results):
    from conftest import tiny

    import harness

    with pytest.raises(ConfigError) as err:
        harness.run(tiny([override], results))
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not list(results.iterdir())  # not even a run directory


def test_the_commands_answer_bad_input_in_one_line_without_a_traceback(results):
    import subprocess
    import sys

    from conftest import REPO

    single = subprocess.run(
        [sys.executable, "run.py", f"paths.results={results}", "trainer.epochs=abc"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 2
    assert single.stderr.strip() == "error: trainer.epochs='abc' must be an integer >= 1, e.g. trainer.epochs=30"
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
