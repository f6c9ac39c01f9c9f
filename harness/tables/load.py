"""Records -> one DataFrame: a row per run directory (a finished, failed or pruned record, or a run still
running), cached in an index keyed by each record's modification time and size."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.rundir import records
from harness.rundir.records import Corrupt
from harness.rundir.run_dir import RunDir
from harness.tables.layout import EPOCHS, RECORD, atomic_write
from harness.tables.problems import Problem

log = logging.getLogger(__name__)

INDEX_FILE = ".tables_index.parquet"
INDEX_VERSION = "v3"  # raise it when what a row holds changes: every record is then read again
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
    """What the index knows a record by: the index's version, the record's modification time and size."""
    try:
        st = os.stat(os.path.join(run_dir, RECORD))
    except FileNotFoundError:
        return None
    return f"{INDEX_VERSION}:{st.st_mtime_ns}:{st.st_size}"


def read_run(run_dir: Path) -> dict:
    """A record as a flat row: lists and dicts become JSON text (one type per column, parquet-safe)."""
    record = records.parse_record(run_dir / RECORD)
    if record is None:
        raise FileNotFoundError(run_dir / RECORD)
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()}


def read_unfinished(run_dir: Path, problems: list) -> dict:
    """A run directory without a record: running, or killed. Known by its name, overrides and epoch log."""
    overrides = run_dir / "overrides.txt"
    epochs = run_dir / EPOCHS
    last_epoch, updated = None, None
    if epochs.exists():
        try:
            rows = records.read_epochs(run_dir)
            last_epoch = rows[-1].get("epoch") if rows else None
        except Corrupt as err:
            problems.append(Problem(str(epochs), str(err), "the run is listed without its last epoch"))
        updated = time.time() - epochs.stat().st_mtime
    words = overrides.read_bytes().decode("utf-8", errors="replace").split() if overrides.exists() else []
    rd = RunDir.at(run_dir)
    keys = {k: v for k, v in rd.keys.items() if k not in ("config_hash", "data_fingerprint")}
    return {
        "name": rd.name,
        **keys,
        "status": "running",
        "last_epoch": last_epoch,
        "updated_s_ago": updated,
        "overrides": json.dumps(words),
    }


@dataclass
class Loaded:
    runs: pd.DataFrame  # one row per run directory, ``path`` its directory
    problems: list  # [Problem]: the records (and epoch logs) that could not be read


def load_runs(root, cache: bool = True) -> pd.DataFrame:
    """One row per run directory under ``root`` (see the package docstring), ``path`` its directory."""
    return scan(root, cache).runs


def scan(root, cache: bool = True) -> Loaded:
    """The runs under ``root``, and the records that cannot enter any table (each with the reason)."""
    root = Path(root)
    run_dirs = find_run_dirs(root)
    stamps = {d: record_stamp(d) for d in run_dirs}
    finished_stamps = {p: s for p, s in stamps.items() if s is not None}

    index = read_index(root) if cache else None
    kept = pd.DataFrame()
    if index is not None:
        kept = index[index["path"].map(finished_stamps) == index["_stamp"]]
    known = set(kept["path"]) if len(kept) else set()
    fresh, problems, unfinished = [], [], [p for p, s in stamps.items() if s is None]
    for path, stamp in finished_stamps.items():
        if path in known:
            continue
        try:
            fresh.append({**read_run(Path(path)), "path": path, "_stamp": stamp})
        except FileNotFoundError:  # removed since it was seen: a rerun is starting
            unfinished.append(path)
        except Corrupt as err:  # never cached: it is read again (and listed) until it is fixed or removed
            problems.append(Problem(str(Path(path) / RECORD), str(err), "in no table"))
    frame = pd.concat([kept, pd.DataFrame(fresh)], ignore_index=True) if fresh else kept
    if cache and (fresh or (index is not None and len(kept) != len(index))):
        write_index(root, frame)

    rows = [{**read_unfinished(Path(p), problems), "path": p} for p in sorted(unfinished)]
    frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True) if rows else frame
    if not frame.empty:
        frame = normalise(frame.drop(columns="_stamp", errors="ignore")).sort_values("path", ignore_index=True)
    return Loaded(frame, problems)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give each object column one type (strings, or bools): mixed values become JSON text."""
    for col in frame.columns[frame.dtypes == object]:  # noqa: E721 (a dtype, not a type)
        kinds = {type(v) for v in frame[col] if v is not None and v == v}
        if len(kinds) > 1 or kinds - {str, bool}:
            frame[col] = frame[col].map(lambda v: v if v is None or v != v or isinstance(v, str) else json.dumps(v))
    return frame


def read_index(root: Path) -> pd.DataFrame | None:
    path = root / INDEX_FILE
    if not path.exists():
        return None
    try:
        index = pd.read_parquet(path)
        if {"path", "_stamp"} - set(index.columns):
            raise ValueError("it has no path and _stamp columns")
        return index
    except Exception as err:  # a damaged cache is rebuilt, never trusted
        log.warning("ignoring the table index %s: %s", path, err)
        return None


def write_index(root: Path, frame: pd.DataFrame) -> None:
    path = root / INDEX_FILE
    if frame.empty:  # every record it knew is gone or unreadable
        path.unlink(missing_ok=True)
        return
    try:
        atomic_write(path, lambda tmp: normalise(frame).to_parquet(tmp, index=False))
    except Exception as err:  # the cache is an optimisation: a read-only folder or an odd column only costs speed
        log.warning("table index not written (%s): %s", path, err)
