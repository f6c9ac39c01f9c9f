"""6. Tables: ``python -m harness.tables`` (what ``make tables`` runs) over 10,000 synthetic records.

One real digits run (one epoch) gives a template record; 10,000 run directories are written from it, each
with its own dataset / loss / regularizer / learning rate / seed (1,000 groups of 10 seeds), metrics and
``epochs.jsonl``, named as the harness names run directories. Timed, each as a fresh process as a user
would start it, with plots on as ``make tables`` makes them, interleaved (a warm-up round, then 5 rounds):

* cold: no ``.tables_index.parquet`` (every record.json is read), against the floor of any tool that
  reads records: ``json.load`` of every record.json into one pandas DataFrame;
* warm: the index is there and no record changed, against cold.

"Cold" means no index; the OS file cache is warm in both (dropping it would disturb the whole machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import open_dict

import harness
from harness.bench.common import figure, interleave
from harness.bench.training_loop import compose_config
from harness.rundir import identity

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DATASETS = ("digits", "cub200", "cars196", "sop")
LOSSES = (
    "multi_similarity",
    "contrastive",
    "triplet",
    "margin",
    "circle",
    "proxy_anchor",
    "proxy_nca",
    "normalized_softmax",
    "soft_triple",
    "arcface",
)
REGULARIZERS = ("none", "antico_pair", "nir", "metrix_feature", "metrix_embedding")
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
FLOOR = """
import json, sys
from pathlib import Path
import pandas as pd
frame = pd.DataFrame([json.loads(p.read_text()) for p in Path(sys.argv[1]).glob("runs/*/*/record.json")])
print(len(frame))
"""


def template_run(work: Path) -> Path:
    """The directory of one real, finished digits run (one epoch)."""
    cfg = compose_config(["trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu"])
    with open_dict(cfg):
        cfg.paths.results = str(work / "template")
    return Path(harness.run(cfg)["run_dir"])


def write_records(template_dir: Path, root: Path, n: int, seed: int = 0) -> int:
    template = json.loads((template_dir / "record.json").read_text())
    epochs = (template_dir / "epochs.jsonl").read_text()
    metrics = [k for k, v in template.items() if k.startswith(("test/", "val/")) and isinstance(v, float)]
    rng = np.random.default_rng(seed)
    groups = [(d, loss, reg, lr) for d in DATASETS for loss in LOSSES for reg in REGULARIZERS for lr in LRS]
    for i in range(n):
        dataset, loss, reg, lr = groups[i % len(groups)]
        s = i // len(groups)
        run_hash = f"{(i % len(groups)) * 2654435761 % 2**32:08x}"
        name = identity.dir_name(
            {"loss": loss, "regularizer": reg, "backbone": "mlp", "config_hash": run_hash, "seed": s}
        )
        run_dir = root / "runs" / dataset / name
        record = dict(
            template,
            name=name,
            run_dir=str(run_dir),
            dataset=dataset,
            loss=loss,
            regularizer=reg,
            seed=s,
            config_hash=run_hash,
            **{"config/seed": s, "config/optimizer.lr": lr},
        )
        record.update({k: float(np.clip(template[k] + rng.normal(0, 0.05), 0, 1)) for k in metrics})
        run_dir.mkdir(parents=True)
        (run_dir / "epochs.jsonl").write_text(epochs)
        (run_dir / "record.json").write_text(json.dumps(record))
    return n


def timed(cmd: list) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def run(quick: bool = False, full: bool = False) -> dict:
    n = 200 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as tmp:
        work = Path(tmp)
        root = work / "results"
        t0 = time.perf_counter()
        write_records(template_run(work), root, n)
        written_s = time.perf_counter() - t0
        tables = [PYTHON, "-m", "harness.tables", str(root), "--out", str(work / "tables")]
        tables += ["--no-plots"] if quick else []  # a smoke run: the plots are make tables' slowest part
        index = root / ".tables_index.parquet"

        def cold():
            index.unlink(missing_ok=True)
            shutil.rmtree(work / "tables", ignore_errors=True)
            timed(tables)

        def warm():  # after any cold round (the warm-up round starts with one): the index is there
            if not index.exists():
                raise RuntimeError("harness.tables wrote no index: the warm figure would measure nothing")
            timed(tables)

        candidates = {"cold": cold, "floor": lambda: timed([PYTHON, "-c", FLOOR, str(root)])}
        if not quick:  # a smoke run times the cold read only
            candidates["warm"] = warm
        times = interleave(candidates)
    figures = [
        figure(
            f"tables over {n:,} records, cold (no index)",
            "python -m harness.tables (cold)",
            "json.load every record.json into a DataFrame",
            times["cold"],
            times["floor"],
            load=times.load,
        )
    ]
    if "warm" in times:
        figures.append(
            figure(
                f"tables over {n:,} records, warm (index, nothing changed)",
                "python -m harness.tables (warm)",
                "python -m harness.tables (cold)",
                times["warm"],
                times["cold"],
                load=times.load,
            )
        )
    warm = f", warm {figures[1]['subject_s']['median']:.1f} s" if "warm" in times else ""
    return {
        "figures": figures,
        "params": {
            "records": n,
            "groups": len(DATASETS) * len(LOSSES) * len(REGULARIZERS) * len(LRS),
            "plots": not quick,
            "rounds": len(times["cold"]),
        },
        "notes": [
            f"cold {figures[0]['subject_s']['median']:.1f} s{warm}, "
            f"reading the records alone {figures[0]['alternative_s']['median']:.1f} s "
            f"({n:,} records written in {written_s:.0f} s)"
        ],
        "ok": True,
    }
