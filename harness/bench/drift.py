"""How far a data-parallel run drifts from the 1-process run: ``python -m harness.bench.drift [--epochs N]``.

The same run (digits + AntiCo pair by default) trained on 1 process and on 2 (``trainer.devices=2``, gloo on the
CPU), each in a fresh results folder; then, epoch by epoch, the difference of the training loss and of the
validation MAP@R. Per step the two compute the same objective on the same global batch (tested in float64 to
1e-10: tests/test_distributed.py); in float32 the sums over the batch run in another order, the last bits differ,
and over many steps of a chaotic optimisation those differences grow. The numbers of docs/howto/gpus.md come from
this command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import harness
from harness.rundir import records

DEFAULT = ["regularizer=antico_pair", "trainer.progress=false", "eval.pictures=false", "trainer.num_threads=1"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.drift", description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("overrides", nargs="*", help="config overrides (default: digits + antico_pair)")
    args = p.parse_args(argv)
    # lazy: brings torch; keeps `python -m harness.bench.drift --help` free of it
    from harness.bench.training_loop import compose_config

    overrides = [*DEFAULT, *args.overrides, f"trainer.epochs={args.epochs}"]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="drift-") as tmp:
        for n in (1, 2):
            record = harness.run(compose_config([*overrides, f"trainer.devices={n}", f"paths.results={tmp}/{n}"]))
            rows[n] = records.read_epochs(Path(record["run_dir"]))
            rows[f"test{n}"] = record
    print(f"{' '.join(overrides)}: 1 process vs 2 (gloo, float32)")
    print(f"{'epoch':>5} {'|d train/loss|':>15} {'|d val/map@r|':>14}")
    worst = 0.0
    for a, b in zip(rows[1][1:], rows[2][1:]):
        dl, dm = abs(a["train/loss"] - b["train/loss"]), abs(a["val/map@r"] - b["val/map@r"])
        worst = max(worst, dm)
        print(f"{a['epoch']:>5} {dl:>15.3g} {dm:>14.4f}")
    t1, t2 = rows["test1"]["test/map@r"], rows["test2"]["test/map@r"]
    print(f"largest |d val/map@r| {worst:.4f}; test MAP@R {t1:.4f} (1 process) vs {t2:.4f} (2 processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
