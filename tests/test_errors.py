"""Bad input: one clear line that names the fix, a non-zero exit, and no finished-looking record."""

import subprocess
import sys

import pytest
from conftest import REPO, tiny

import harness
from harness.errors import ConfigError, NonFiniteLossError
from harness.rundir import records
from harness.rundir.run_dir import RunDir


def run_cli(*overrides, results):
    return subprocess.run(
        [sys.executable, "run.py", f"paths.results={results}", "trainer.epochs=1", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def finished_records(results):
    return [p for p in results.rglob("record.json") if records.read_record(p.parent)["status"] == "finished"]


@pytest.mark.parametrize(
    "override,expected",
    [
        ("loss=no_such_loss", "loss has no option 'no_such_loss'; loss options: arcface, circle"),
        ("trainer.no_such_key=1", "trainer.no_such_key is not a key of trainer; trainer has amp, channels_last"),
        ("sampler.m=7", "sampler.m=7 does not divide sampler.batch_size=60"),
    ],
)
def test_cli_rejects_bad_input_in_one_line(override, expected, results):
    out = run_cli(override, results=results)
    assert out.returncode == 2 and expected in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: ")
    assert not finished_records(results)


@pytest.mark.parametrize(
    "override,expected",
    [
        ("head.embed_dim=0", "head.embed_dim=0 must be an integer >= 1"),
        ("sampler.m=200 sampler.batch_size=200", "has 17[0-9] samples, fewer than sampler.m=200"),
        ("sampler.batch_size=100", "needs 5 classes but the training split has 3"),
        ("trainer.epochs=0", "trainer.epochs=0 must be an integer >= 1"),
        ("selection.metric=recall@16", "add it to eval.k"),
        ("trainer.device=cuda:0", "no CUDA device"),
    ],
)
def test_config_errors_name_the_fix(override, expected, results):
    if override.startswith("trainer.device") and __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match=expected):
        harness.run(tiny(override.split(), results))
    # refused by validation: nothing written; refused by build (it needs the data): a failed record, never finished
    assert all(records.read_record(p.parent)["status"] == "failed" for p in results.rglob("record.json"))
    assert not finished_records(results)


def test_nan_loss_stops_at_once_naming_step_and_terms(results):
    cfg = tiny(["loss.loss.beta=inf"], results)  # (a NaN value is refused before anything is built)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1 step 0 \(base=nan\); lower optimizer.lr"):
        harness.run(cfg)
    record = records.read_record(RunDir.for_config(cfg).path)
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]
    assert "Traceback" in (RunDir.for_config(cfg).path / "error.txt").read_text()
    assert not finished_records(results)


def test_errors_raised_inside_instantiate_stay_one_line(results):
    # a ConfigError raised in a constructor that Hydra instantiates is not wrapped in Hydra's exception
    with pytest.raises(ConfigError, match=r"^regularizer.antico_pair.form='bad' is unknown; use one of exp, linear$"):
        harness.run(tiny(["regularizer=antico_pair", "regularizer.antico_pair.form=bad"], results))
