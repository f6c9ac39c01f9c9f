"""`python -m harness.evaluate` on bad input: one line naming the fix and exit 2, never a traceback."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, exit_code

from harness.evaluate import main


def save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def good(n=40, d=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), np.arange(n) % classes


def one_line_error(capsys, argv, expected):
    assert exit_code(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "case,expected",
    [
        ("nan", "hold NaN or inf"),
        ("inf", "hold NaN or inf"),
        ("huge", "exceed float32"),
        ("empty_rows", "are empty"),
        ("empty_dims", "are empty"),
        ("unique", "every one of the 40 labels is unique"),
        ("float_labels", "non-integer values"),
        ("strings", "not numbers"),
        ("mismatch", "expected an n x d embedding array and n labels"),
    ],
)
def test_bad_arrays_are_one_line(tmp_path, capsys, case, expected):
    x, y = good()
    if case == "nan":
        x[3, 1] = np.nan
    elif case == "inf":
        x[5, 0] = -np.inf
    elif case == "huge":
        x = x.astype(np.float64)
        x[0, 0] = 1e300
    elif case == "empty_rows":
        x, y = x[:0], y[:0]
    elif case == "empty_dims":
        x = x[:, :0]
    elif case == "unique":
        y = np.arange(len(x))
    elif case == "float_labels":
        y = y + 0.5
    elif case == "strings":
        x = np.array([["a"] * 8] * len(y))
    elif case == "mismatch":
        y = y[:-1]
    one_line_error(capsys, [save(tmp_path, "e.npy", x), save(tmp_path, "l.npy", y)], expected)


def test_a_gallery_of_another_dimension_is_one_line(tmp_path, capsys):
    x, y = good()
    g, gl = good(d=16, seed=1)
    one_line_error(
        capsys,
        [
            save(tmp_path, "q.npy", x),
            save(tmp_path, "ql.npy", y),
            "--gallery",
            save(tmp_path, "g.npy", g),
            save(tmp_path, "gl.npy", gl),
        ],
        "16-dimensional",
    )
    one_line_error(
        capsys,
        [
            save(tmp_path, "q.npy", x),
            save(tmp_path, "ql.npy", y),
            "--gallery",
            save(tmp_path, "g.npy", good(d=8)[0]),
            save(tmp_path, "gl.npy", gl + 100),
        ],
        "no query label occurs in the gallery",
    )


@pytest.mark.parametrize("k", ["0,abc", "0", "-1", "", "1,,x", "2.5"])
def test_a_bad_k_list_is_one_line(tmp_path, capsys, k):
    x, y = good()
    one_line_error(capsys, [save(tmp_path, "e.npy", x), save(tmp_path, "l.npy", y), f"--k={k}"], "--k")


def test_unreadable_files_are_one_line(tmp_path, capsys):
    (tmp_path / "e.npy").write_text("not an array")
    x, y = good()
    one_line_error(capsys, [str(tmp_path / "e.npy"), save(tmp_path, "l.npy", y)], "cannot read")
    one_line_error(capsys, [str(tmp_path / "missing.npy"), save(tmp_path, "l.npy", y)], "cannot read")
    objects = tmp_path / "o.npy"
    np.save(objects, np.array([{"a": 1}] * len(y), dtype=object), allow_pickle=True)
    one_line_error(capsys, [str(objects), save(tmp_path, "l.npy", y)], "cannot read")  # never unpickled


def test_a_single_class_warns_that_every_metric_is_trivially_one(tmp_path, capsys):
    x, _ = good()
    assert main([save(tmp_path, "e.npy", x), save(tmp_path, "l.npy", np.zeros(len(x), int)), "--no-nmi"]) == 0
    captured = capsys.readouterr()
    assert "every retrieval metric is trivially 1" in captured.err and '"recall@1": 1.0' in captured.out


def test_the_real_command_answers_bad_k_in_one_line(tmp_path):
    x, y = good()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.evaluate",
            save(tmp_path, "e.npy", x),
            save(tmp_path, "l.npy", y),
            "--k",
            "0,abc",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == "error: --k '0,abc': give positive integers separated by commas, e.g. --k 1,2,4,8"
    out = subprocess.run(
        [sys.executable, "-m", "harness.evaluate", "--metric", "cosine", "a", "b"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1 and "--metric" in out.stderr
