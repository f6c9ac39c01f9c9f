"""Records -> one DataFrame: a row per run directory (a finished, failed or pruned record, or a run still
running), cached in an index keyed by each record's modification time and size."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

from harness.tables.layout import EPOCHS, RECORD

log = logging.getLogger("harness.tables")

INDEX_FILE = ".tables_index.parquet"
SKIP_DIRS = {"checkpoints", "multirun", "tables", "bench"}


def find_run_dirs(root: Path) -> list:
    """Every run directory under ``root`` (one with a record, or a config and an epoch log), not descending into one."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if RECORD in filenames or (EPOCHS in filenames and "config.yaml" in filenames):
            found.append(dirpath)
            dirnames[:] = []
        else:
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
    return found


def record_stamp(run_dir: str) -> str | None:
    try:
        st = os.stat(os.path.join(run_dir, RECORD))
    except FileNotFoundError:
        return None
    return f"{st.st_mtime_ns}:{st.st_size}"


def read_run(run_dir: Path) -> dict:
    """A record as a flat row: lists and dicts become JSON text (one type per column, parquet-safe)."""
    try:
        record = json.loads((run_dir / RECORD).read_text())
    except (OSError, json.JSONDecodeError) as err:  # records are written atomically: this is damage, not a race
        return {**names_from_dir(run_dir), "status": "failed", "error": f"unreadable record.json: {err}"}
    row = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()}
    row.setdefault("status", "failed")
    return row


def read_unfinished(run_dir: Path) -> dict:
    """A run directory without a record: running, or killed. Known by its name, overrides and epoch log."""
    overrides = run_dir / "overrides.txt"
    epochs = run_dir / EPOCHS
    last_epoch, updated = None, None
    if epochs.exists():
        lines = [line for line in epochs.read_text().splitlines() if line.strip()]
        last_epoch = json.loads(lines[-1]).get("epoch") if lines else None
        updated = time.time() - epochs.stat().st_mtime
    return {
        **names_from_dir(run_dir), "status": "running", "last_epoch": last_epoch, "updated_s_ago": updated,
        "overrides": json.dumps(overrides.read_text().split() if overrides.exists() else []),
    }


def names_from_dir(run_dir: Path) -> dict:
    """dataset / loss / regularizer / backbone / seed from ``runs/<dataset>/<loss>__<regs>__<backbone>__<hash>__seed<N>``."""
    parts = run_dir.name.split("__")
    row = {"name": run_dir.name, "dataset": run_dir.parent.name}
    if len(parts) == 5 and parts[4].startswith("seed") and parts[4][4:].isdigit():
        row.update(loss=parts[0], regularizer=parts[1], backbone=parts[2], seed=int(parts[4][4:]))
    return row


def load_runs(root, cache: bool = True) -> pd.DataFrame:
    """One row per run directory under ``root`` (see the module docstring), ``path`` its directory."""
    root = Path(root)
    run_dirs = find_run_dirs(root)
    stamps = {d: record_stamp(d) for d in run_dirs}
    finished_stamps = {p: s for p, s in stamps.items() if s is not None}

    index = read_index(root) if cache else None
    kept = pd.DataFrame()
    if index is not None:
        kept = index[index["path"].map(finished_stamps) == index["_stamp"]]
    known = set(kept["path"]) if len(kept) else set()
    fresh = [{**read_run(Path(p)), "path": p, "_stamp": s} for p, s in finished_stamps.items() if p not in known]
    frame = pd.concat([kept, pd.DataFrame(fresh)], ignore_index=True) if fresh else kept
    if cache and finished_stamps and (fresh or index is None or len(kept) != len(index)):
        write_index(root, frame)

    unfinished = [{**read_unfinished(Path(p)), "path": p} for p, s in stamps.items() if s is None]
    frame = pd.concat([frame, pd.DataFrame(unfinished)], ignore_index=True) if unfinished else frame
    if frame.empty:
        return frame
    return normalise(frame.drop(columns="_stamp", errors="ignore")).sort_values("path", ignore_index=True)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give each object column one type (strings, or bools): mixed values become JSON text."""
    for col in frame.columns[frame.dtypes == object]:
        kinds = {type(v) for v in frame[col] if v is not None and v == v}
        if len(kinds) > 1 or kinds - {str, bool}:
            frame[col] = frame[col].map(lambda v: v if v is None or v != v or isinstance(v, str) else json.dumps(v))
    return frame


def read_index(root: Path) -> pd.DataFrame | None:
    path = root / INDEX_FILE
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:  # a damaged cache is rebuilt, never trusted
        log.warning("ignoring the table index %s: %s", path, err)
        return None


def write_index(root: Path, frame: pd.DataFrame) -> None:
    path = root / INDEX_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        normalise(frame).to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except Exception as err:  # the cache is an optimisation: a read-only folder or an odd column only costs speed
        tmp.unlink(missing_ok=True)
        log.warning("table index not written (%s): %s", path, err)
