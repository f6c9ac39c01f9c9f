"""Property-based fuzzing (Hypothesis): whatever a user gives `python -m harness.evaluate` or a run's overrides,
no traceback reaches them (a result, or one line naming the fix and a non-zero exit) and nothing that looks
finished is left behind. Small example counts keep this to about a minute."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.evaluate import main as evaluate_main

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from([0.0, 1e300, -1e-300]))


@st.composite
def evaluate_inputs(draw):
    n = draw(st.integers(0, 24))
    d = draw(st.integers(0, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.uint8]))
    elements = FLOATS if np.dtype(dtype).kind == "f" else None
    emb = draw(hnp.arrays(dtype, (n, d), elements=elements))
    n_labels = draw(st.sampled_from([n, n, n, max(n - 1, 0), n + 1]))
    label_kind = draw(st.sampled_from(["int", "int", "float", "str"]))
    labels = draw(hnp.arrays(np.int64, (n_labels,), elements=st.integers(-3, 3)))
    if label_kind == "float":
        labels = labels + draw(st.sampled_from([0.0, 0.5, np.nan]))
    elif label_kind == "str":
        labels = labels.astype(str)
    args = {"k": draw(st.one_of(st.sampled_from(["1,2", "1", "0", "0,abc", "", "-2", "1,,8", "100", " 3 , 1"]),
                                st.text(alphabet="0123456789,-ab .", max_size=8))),
            "metric": draw(st.sampled_from(["ip", "l2"])), "normalize": draw(st.booleans()),
            "gallery": None}
    if draw(st.booleans()):
        gn, gd = draw(st.integers(0, 12)), draw(st.sampled_from([d, d, d + 1]))
        gallery = draw(hnp.arrays(np.float32, (gn, gd), elements=st.floats(-10, 10, width=32)))
        gallery_labels = draw(hnp.arrays(np.int64, (gn,), elements=st.integers(-3, 3)))
        args["gallery"] = (gallery, gallery_labels)
    return emb, labels, args


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(evaluate_inputs())
def test_evaluate_never_shows_a_traceback(tmp_path_factory, case):
    emb, labels, args = case
    tmp = tmp_path_factory.mktemp("ev")
    np.save(tmp / "e.npy", emb)
    np.save(tmp / "l.npy", labels)
    argv = [str(tmp / "e.npy"), str(tmp / "l.npy"), f"--k={args['k']}", "--metric", args["metric"], "--no-nmi"]
    if not args["normalize"]:
        argv.append("--no-normalize")
    if args["gallery"] is not None:
        np.save(tmp / "g.npy", args["gallery"][0])
        np.save(tmp / "gl.npy", args["gallery"][1])
        argv += ["--gallery", str(tmp / "g.npy"), str(tmp / "gl.npy")]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = evaluate_main(argv)
        except SystemExit as exit_:  # argparse: its message is the one line
            code, message = 2, str(exit_.code)
            assert message.startswith("error: ") and "\n" not in message
    if code == 0:
        assert out.getvalue().lstrip().startswith("{")
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert all(line.startswith("warning: ") for line in lines), err.getvalue()
    else:
        assert code == 2
        lines = err.getvalue().strip().splitlines()
        assert len(lines) <= 1 and (not lines or lines[0].startswith("error: ")), err.getvalue()


def is_finite_number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
