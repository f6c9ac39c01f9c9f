"""Never wedged (harness/rundir/salvage.py): a truncated last.pt, a binary or stub record.json is named, moved aside as
*.corrupt with a log line, and the run goes on (from the start, or trained again), instead of failing every re-run."""

import json
import logging

import pytest
from conftest import tiny

import harness
from harness.rundir import records
from harness.rundir.run_dir import RunDir

FAST = ["sampler.batches_per_epoch=3", "eval.nmi=false", "eval.utilization=false"]


def test_a_truncated_last_checkpoint_is_moved_aside_and_training_starts_again(tmp_path, caplog):
    whole = harness.run(tiny(FAST, tmp_path / "whole", epochs=3))

    def interrupt(epoch, _metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    cfg = tiny(FAST, tmp_path / "cut", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        harness.run(cfg, on_evaluate=interrupt)
    last = RunDir.for_config(cfg).path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short, a disk that filled
    with caplog.at_level(logging.WARNING, logger="harness"):
        again = harness.run(cfg)
    assert again["status"] == "finished" and again["attempts"] == 1  # started again, from the start
    assert (last.parent / "last.pt.corrupt").exists()
    assert any(
        "last.pt is unusable" in r.getMessage()
        and "moved aside to last.pt.corrupt" in r.getMessage()
        and "training starts from the start" in r.getMessage()
        for r in caplog.records
    )
    for key in [k for k in whole if k.startswith(("val/", "test/"))]:
        assert again[key] == whole[key], key  # the same seed from the start: the same numbers


@pytest.mark.parametrize("content", [b"\x80\x04\x95binary\x00\xff", b'{"status": "finished"}', b"[]", b'{"stat'])
def test_a_binary_or_stub_record_is_moved_aside_and_the_run_trained_again(results, caplog, content):
    cfg = tiny(FAST, results, epochs=1)
    first = harness.run(cfg)
    path = RunDir.for_config(cfg).path / "record.json"
    path.write_bytes(content)
    assert records.read_record(path.parent) is None  # readers (launchers, tables) never crash on it
    with caplog.at_level(logging.WARNING, logger="harness"):
        again = harness.run(cfg)
    assert again["status"] == "finished" and again["test/map@r"] == first["test/map@r"]
    assert (path.parent / "record.json.corrupt").read_bytes() == content
    assert json.loads(path.read_text())["status"] == "finished"
    assert any(
        f"{path} is unusable" in r.getMessage() and "the run starts again" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("rerun", [False, True])
def test_a_truncated_best_checkpoint_is_moved_aside_and_the_selected_epoch_trained_again(tmp_path, caplog, rerun):
    """last.pt holds the last epoch, not the selected one: a damaged best.pt is rebuilt by training again to the
    selected epoch, checked against the epoch log, and the record equals the uninterrupted run's."""
    from pathlib import Path

    whole = harness.run(tiny(FAST, tmp_path, epochs=3))
    run_dir = Path(whole["run_dir"])
    (run_dir / "record.json").unlink()  # killed after its last checkpoint, before its record
    best = run_dir / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    with caplog.at_level(logging.INFO, logger="harness"):
        again = harness.run(tiny([*FAST, f"trainer.rerun={rerun}"], tmp_path, epochs=3))
    assert again["status"] == "finished" and again["run_dir"] == whole["run_dir"]
    for key in [k for k in whole if k.startswith(("val/", "test/", "init/"))] + ["selected_epoch"]:
        assert again[key] == whole[key], key
    epoch = whole["selected_epoch"]
    assert (best.parent / "best.pt.corrupt").exists() and not (best.parent / "retrain").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"{best} is unusable" in m and "moved aside to best.pt.corrupt" in m and f"training again to epoch {epoch}" in m
        for m in messages
    )
    assert any(f"epoch {epoch} trained again: val/map@r" in m and "as in the epoch log" in m for m in messages)
