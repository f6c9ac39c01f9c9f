"""The files of a run directory: per-epoch JSON lines and the final record.

    <run dir>/                        (named by harness.rundir.identity.run_dir_for)
        config.yaml       the resolved config (secrets redacted)
        overrides.txt     the command-line overrides of this run
        epochs.jsonl      one JSON object per epoch: losses by term, learning rates, val metrics, times
        checkpoints/      last.pt (resume) and best.pt (the selected epoch)
        record.json       the final record (status finished / failed / pruned), written last
        error.txt         the traceback of a failed run
        run.log           the run's log

Re-running a config whose record says ``finished`` returns that record and trains nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.io import atomic_write_text, json_default
from harness.redact import redact  # noqa: F401  (the one redaction module, re-exported)

RECORD = "record.json"
EPOCHS = "epochs.jsonl"


def read_record(run_dir: Path) -> dict | None:
    """The run's record, or None when there is none or it is damaged (only the run itself moves it aside)."""
    from harness.rundir.salvage import Corrupt, parse_record

    try:
        return parse_record(Path(run_dir) / RECORD)
    except Corrupt:
        return None


def append_epoch(run_dir: Path, row: dict) -> None:
    with open(Path(run_dir) / EPOCHS, "a") as f:
        f.write(json.dumps(row, default=json_default) + "\n")
        f.flush()


def read_epochs(run_dir: Path) -> list:
    path = Path(run_dir) / EPOCHS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_epochs(run_dir: Path, last_epoch: int) -> None:
    """Drop epoch lines after ``last_epoch`` (a resumed run rewrites them exactly)."""
    rows = [r for r in read_epochs(run_dir) if r["epoch"] <= last_epoch]
    atomic_write_text(Path(run_dir) / EPOCHS, "".join(json.dumps(r) + "\n" for r in rows))


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v if not isinstance(v, (list, tuple)) else json.dumps(v)
    return out
