"""What a run tells the person who started it: its log file, and the result at a glance."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

SUMMARY_METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi")


@contextmanager
def logging_to(path: Path):
    """Also log to ``path`` (the run's run.log) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def format_summary(record: dict) -> str:
    """The result at a glance: trained test metrics beside the untrained network and raw inputs."""
    keys = [k for k in SUMMARY_METRICS if f"test/{k}" in record]
    rows = [("raw inputs", "raw/test"), ("untrained net", "init/test"), ("trained (selected)", "test")]
    selection = record["selection/metric"]
    lines = [
        f"{record['dataset']} | loss={record['loss']} | regularizer={record['regularizer']} | seed={record['seed']} | "
        f"selected epoch {record['selected_epoch']} by {selection}={record.get(selection, float('nan')):.4f}",
        f"{'test split':<20}" + "".join(f"{k:>12}" for k in keys),
    ]
    for label, prefix in rows:
        if f"{prefix}/{keys[0]}" in record:
            lines.append(f"{label:<20}" + "".join(f"{record[f'{prefix}/{k}']:>12.4f}" for k in keys))
    lines.append(f"record: {record['run_dir']}/record.json")
    return "\n".join(lines)
