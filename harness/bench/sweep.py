"""5. Start-up and sweep overhead.

* Start-up: seconds from launching ``python run.py`` (digits default) to the start of its first training
  step (just after the untrained network's evaluation, whose row is the first line of epochs.jsonl), against
  the floor of any PyTorch script: ``python -c "import torch"``.
  The three are interleaved like every figure (a warm-up round, then at least 5 rounds).
* Sweep: a 20-run digits grid (5 seeds x 4 losses) with ``python run.py -m``: total wall time minus the
  sum of the runs' own training time (``train_time_s`` of their records), i.e. everything a sweep costs
  beyond the training itself (process start, config composition, data, evaluation, checkpoints, records,
  launching), per run, with the local launcher and with the SLURM launcher on a one-node SLURM cluster started
  on this machine (``tests/slurm_cluster.py``; skipped where SLURM cannot start). SLURM runs one job at a time
  here, as the local launcher does: on a real cluster the jobs run side by side, and this per-run overhead
  is what each of them pays. 3 epochs per run: the training time is only the yardstick. One grid is one
  measurement (seconds of overhead per run, with the load it ran under), not a ratio figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.bench.common import MIN_ROUNDS, figure, interleave, measurement, stats

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GRID = ["seed=0,1,2,3,4", "loss=multi_similarity,contrastive,triplet,proxy_anchor"]
QUICK_GRID = ["seed=0,1", "loss=multi_similarity"]
# one job at a time (--array=...%1), as the local launcher runs them: the same training time, so the difference is
# what SLURM adds (queueing, job start, the code snapshot, a fresh interpreter per run)
SLURM_OVERRIDES = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=2",
    "hydra.launcher.mem_gb=null",
    "hydra.launcher.array_parallelism=1",
]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_RESULTS"}
    return {**env, **extra}


def seconds_to_first_step(results: Path) -> float:
    """Launch ``run.py`` and watch its run directory: the untrained network's row (epoch 0) lands in
    epochs.jsonl just before the first training step; then stop the run (it stays unfinished, in a temp dir)."""
    t0 = time.time()
    child = subprocess.Popen(
        [PYTHON, "run.py", f"paths.results={results}", "trainer.progress=false", "trainer.rerun=true"],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while child.poll() is None and time.time() - t0 < 600:
            if any(p.stat().st_size for p in results.glob("runs/*/*/epochs.jsonl")):
                return time.time() - t0
            time.sleep(0.01)
    finally:
        child.kill()
        output = child.communicate()[0]
    raise RuntimeError(f"run.py never reached its first training step:\n{output[-3000:]}")


def seconds_to_import(module: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-c", f"import {module}"], cwd=REPO, env=clean_env(), check=True, timeout=300)
    return time.perf_counter() - t0


def startup(work: Path, quick: bool = False) -> tuple:
    rounds = iter(range(10**6))
    first_step = {}

    def run_py():  # interleave times the whole call; the watched time to the first step is kept apart
        r = next(rounds)
        first_step[r] = seconds_to_first_step(work / f"startup{r}")

    candidates = {"run": run_py, "torch": lambda: seconds_to_import("torch")}
    if not quick:  # the import of the harness alone, for the note
        candidates["harness"] = lambda: seconds_to_import("harness.training.task")
    times = interleave(candidates, MIN_ROUNDS)
    times["run"] = [first_step[r] for r in sorted(first_step)][-MIN_ROUNDS:]  # the timed rounds (warm-up dropped)
    fig = figure(
        "start-up: `python run.py` to the first training step (digits)",
        "python run.py",
        'python -c "import torch"',
        times["run"],
        times["torch"],
        load=times.load,
    )
    harness = f"importing the harness {stats(times['harness'])['median']:.1f} s " if "harness" in times else ""
    note = (
        f"start-up {fig['subject_s']['median']:.1f} s to the first step: {harness}(torch alone "
        f"{fig['alternative_s']['median']:.1f} s), the rest is config, data, model and the untrained network's "
        f"evaluation"
    )
    return fig, note


def run_grid(grid: list, epochs: int, work: Path, launcher: list, env: dict) -> dict:
    results, sweep_dir = work / "results", work / "sweep"
    cmd = [
        PYTHON,
        "run.py",
        "-m",
        *launcher,
        *grid,
        f"trainer.epochs={epochs}",
        "trainer.progress=false",
        f"paths.results={results}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"the grid failed ({' '.join(cmd)}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    runs = [json.loads(p.read_text()) for p in results.glob("runs/*/*/record.json")]
    if not runs or any(r.get("status") != "finished" for r in runs):
        raise RuntimeError(f"the grid left {len(runs)} records, not all finished: {out.stdout[-2000:]}")
    return {
        "wall_s": wall,
        "runs": len(runs),
        "train_s": sum(r["train_time_s"] for r in runs),
        "run_wall_s": sum(r["wall_time_s"] for r in runs),
    }


def grid_measurement(name: str, g: dict) -> dict:
    return {
        **measurement(
            f"{g['runs']}-run digits grid, {name}: overhead per run",
            (g["wall_s"] - g["train_s"]) / g["runs"],
            "s",
            f"{g['wall_s']:.0f} s total, the runs' own training {g['train_s']:.0f} s, {g['runs']} runs",
        ),
        "wall_s": g["wall_s"],
        "train_s": g["train_s"],
        "runs": g["runs"],
    }


def slurm_grid(grid: list, epochs: int, work: Path) -> tuple:
    """The grid on a one-node SLURM cluster started here; (result, None) or (None, why it was skipped)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        # lazy: tests/slurm_cluster.py, importable only with tests/ on sys.path (above)
        from slurm_cluster import LocalSlurm, cannot_start_reason
    except ImportError:
        return None, "tests/slurm_cluster.py is missing"
    finally:
        sys.path.remove(str(REPO / "tests"))
    reason = cannot_start_reason()
    if reason:
        return None, reason
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-"))  # short: munge's socket path must fit in 108 bytes
    cluster = LocalSlurm(root)
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            return None, f"the local cluster did not start: {str(exc).splitlines()[0]}"
        return run_grid(grid, epochs, work, SLURM_OVERRIDES, clean_env(**cluster.env)), None
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(quick: bool = False, full: bool = False) -> dict:
    grid, epochs = (QUICK_GRID, 1) if quick else (GRID, 3)
    notes, figures, measurements = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        fig, note = startup(work, quick)
        figures.append(fig)
        notes.append(note)
        measurements.append(grid_measurement("local launcher", run_grid(grid, epochs, work / "local", [], clean_env())))
        if quick:
            notes.append("SLURM launcher: not run in --quick mode")
        else:
            slurm, why = slurm_grid(grid, epochs, work / "slurm")
            if slurm:
                measurements.append(grid_measurement("SLURM launcher (local 1-node cluster, one job at a time)", slurm))
            else:
                notes.append(f"SLURM launcher: not measured ({why})")
    return {
        "figures": figures,
        "measurements": measurements,
        "notes": notes,
        "params": {"grid": grid, "epochs": epochs, "startup_rounds": MIN_ROUNDS},
        "ok": True,
    }
