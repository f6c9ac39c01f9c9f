"""Property-based fuzzing (Hypothesis): whatever a user gives `python -m harness.evaluate` or a run's overrides,
no traceback reaches them (a result, or one line naming the fix and a non-zero exit) and nothing that looks
finished is left behind. Small example counts keep this to about a minute."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from conftest import exit_code
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
    args = {
        "k": draw(
            st.one_of(
                st.sampled_from(["1,2", "1", "0", "0,abc", "", "-2", "1,,8", "100", " 3 , 1"]),
                st.text(alphabet="0123456789,-ab .", max_size=8),
            )
        ),
        "metric": draw(st.sampled_from(["ip", "l2"])),
        "normalize": draw(st.booleans()),
        "gallery": None,
    }
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
        code = exit_code(evaluate_main, argv)  # it exits through harness.cli.fail: one line on stderr
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


# ----------------------------------------------------------------------------------------------- run overrides
KEYS = [
    "trainer.epochs",
    "seed",
    "optimizer.lr",
    "eval.k",
    "trainer.device",
    "sampler.batches_per_epoch",
    "trainer.checkpoint_every",
    "sampler.m",
    "sampler.batch_size",
    "head.embed_dim",
    "trainer.eval_every",
    "selection.metric",
    "selection.mode",
    "trainer.amp",
    "trainer.grad_clip",
    "trainer.num_workers",
    "eval.batch_size",
    "optimizer.weight_decay",
    "trainer.freeze_backbone_epochs",
    "trainer.num_threads",
    "head.pooling",
    "eval.metric",
    "trainer.rerun",
    "trainer.devices",
    "trainer.nodes",
    "dataset.val_fraction",
    "loss.weight",
    "trainer.channels_last",
]
WORDS = [
    "abc",
    "nan",
    "inf",
    "-inf",
    "[]",
    "[0]",
    "[1,abc]",
    "null",
    "true",
    "''",
    "tpu",
    "cuda:x",
    "recall@3",
    "recall@abc",
    "1e-3",
    "-1e-3",
    "[1,2]",
    "{a: 1}",
    "max",
    "min",
    "auto",
    "cpu",
]


def value_text(small: bool):
    ints = st.integers(-3, 6) if small else st.integers(-10, 10**6)
    floats = st.floats(-1e3, 1e3) if small else st.floats(allow_nan=True, allow_infinity=True)
    return st.one_of(
        ints.map(str),
        floats.map(repr),
        st.sampled_from(WORDS),
        st.text(alphabet="ab01-.,[]:@ ", min_size=0, max_size=6),
    )


def overrides(small: bool = False, max_size: int = 4):
    return st.lists(
        st.tuples(st.sampled_from(KEYS), value_text(small)), min_size=1, max_size=max_size, unique_by=lambda kv: kv[0]
    ).map(lambda kvs: [f"{k}={v}" for k, v in kvs])


@pytest.fixture(scope="module")
def base_cfg():
    from conftest import compose_cfg

    return compose_cfg(["trainer.epochs=1"])


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_config_validation_answers_any_override_in_one_line(base_cfg, drawn):
    """Each drawn override parsed by Hydra's own parser and applied as composing would (the config groups are not
    structured, so a value of any type reaches the harness), then validated: a result or one line, never a crash."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from harness.config import validate_config
    from harness.errors import HarnessError

    try:
        parsed = OverridesParser.create().parse_overrides(drawn)
    except HydraException:  # Hydra's own one-line error for an override it cannot parse
        return
    cfg = base_cfg.copy()
    try:
        with open_dict(cfg):
            for override in parsed:
                OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
    except (HydraException, OmegaConfBaseException, ValueError):  # e.g. a sweep (a,b) given to a single run
        return
    try:
        validate_config(cfg)
    except HarnessError as err:
        assert "\n" not in str(err) and str(err)


def mistyped(key: str):
    """``key`` with one character dropped, doubled or swapped with the next: a typo."""

    def typos(i: int) -> list:
        return [
            key[:i] + key[i + 1 :],
            key[:i] + key[i] * 2 + key[i + 1 :],
            key[:i] + key[i + 1 : i + 2] + key[i] + key[i + 2 :],
        ]

    return st.integers(0, len(key) - 1).flatmap(lambda i: st.sampled_from(typos(i)))


@st.composite
def command_lines(draw):
    """Overrides as a user types them: real keys and group options, typos of them, with +, ++ or ~."""
    from conftest import group_options

    lines = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            group = draw(st.sampled_from(["loss", "regularizer", "dataset", "sweep", "sampler", "optimizer"]))
            option = draw(st.sampled_from(group_options(group)).flatmap(lambda o: st.one_of(st.just(o), mistyped(o))))
            lines.append(f"{group}={option}")
        else:
            key = draw(st.sampled_from(KEYS).flatmap(lambda k: st.one_of(st.just(k), mistyped(k))))
            prefix = draw(st.sampled_from(["", "", "+", "++", "~"]))
            lines.append(f"{prefix}{key}" if prefix == "~" else f"{prefix}{key}={draw(value_text(small=True))}")
    return lines


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_the_key_check_passes_or_answers_in_one_line_and_never_refuses_a_real_key(drawn):
    from harness.config.overrides import check_overrides
    from harness.errors import ConfigError

    try:
        check_overrides(drawn)
    except ConfigError as err:
        message = str(err)
        assert message and "\n" not in message
        refused = message.split(":", 1)[0]
        if refused in drawn and not message.startswith("cannot parse"):  # the line it names is one of them
            key = refused.lstrip("+~").split("=", 1)[0]
            assert key not in KEYS or "is not a key" not in message, message


FAST_RUN = [
    "trainer.epochs=1",
    "sampler.batches_per_epoch=1",
    "eval.nmi=false",
    "eval.utilization=false",
    "trainer.progress=false",
]


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(overrides(small=True, max_size=2))
def test_real_runs_with_drawn_overrides_never_show_a_traceback_nor_leave_a_false_finish(tmp_path_factory, drawn):
    import subprocess
    import sys

    from conftest import REPO

    from harness.rundir import records

    results = tmp_path_factory.mktemp("fuzz") / "results"
    proc = subprocess.run(
        [sys.executable, "run.py", f"paths.results={results}", *FAST_RUN, *drawn],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said, said[-3000:]
    found = [records.read_record(p.parent) for p in results.rglob("record.json")] if results.exists() else []
    if proc.returncode == 0:
        assert [r["status"] for r in found] == ["finished"]
    else:
        assert not [r for r in found if r and r["status"] == "finished"]
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert lines and (lines[-1].startswith("error: ") or "HYDRA_FULL_ERROR" in lines[-1]), said[-2000:]
