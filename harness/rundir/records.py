"""The run directory's two logs, read and checked in one place: ``record.json`` and ``epochs.jsonl``.

    record.json     the final record: flat JSON, written whole and atomically, ``status`` last
                    (finished | failed | pruned)
    epochs.jsonl    one JSON object per epoch (epoch 0 is the untrained network); appended by the run's one writer

:func:`check_record` is the one validator: the run itself (a damaged record is set aside and the run done again,
harness.rundir.salvage), the tables (a record that fails it enters no table) and every other reader use it.
:func:`read_epochs` is the one epoch-log reader: a last line cut short (the run is writing it, or was killed while
writing it) is left out; any other bad line is :class:`Corrupt`.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

from harness.io import atomic_write_text, json_default

RECORD = "record.json"
EPOCHS = "epochs.jsonl"
STATUSES = ("finished", "failed", "pruned")

TEXT_KEYS = (
    "name",
    "dataset",
    "backbone",
    "loss",
    "regularizer",
    "config_hash",
    "selection/metric",
    "error",
    "error_file",
    "run_dir",
    "per_query_file",  # the test queries' values beside the record (harness.evaluation.per_query)
    "code/numerical",  # the numerical path's code hash and the arithmetic (harness.provenance.numerics)
    "precision",
)
NUMBER_KEYS = ("epochs", "selected_epoch", "pruned_epoch", "wall_time_s", "train_time_s", "attempts")
METRIC_PREFIXES = ("test/", "val/", "raw/", "init/", "diag/", "test_best/")
FLAG_KEYS = ("test_best/optimistic",)
EPOCH_NUMBERS = ("train/", "val/")  # epoch-log values that must be numbers (the curves plot them)


class Corrupt(Exception):
    """A file that exists but cannot be used; the message says why, in one line."""


def kind(value) -> str:
    """A JSON value's type as a reader would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, numbers.Number):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def expected(key: str):
    """(test, what it should be) for a record key that readers rely on, or None for a key they pass through."""
    if key in FLAG_KEYS:
        return (lambda v: isinstance(v, bool)), "true/false"
    if key == "seed":
        return (lambda v: isinstance(v, int) and not isinstance(v, bool)), "an integer"
    if key in TEXT_KEYS or key == "status":
        return (lambda v: isinstance(v, str)), "text"
    if key == "overrides":
        return (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)), "a list of text"
    if key in NUMBER_KEYS or key.startswith(METRIC_PREFIXES):
        return is_number, "a number"
    return None


def check_record(record) -> str | None:
    """Why a parsed record cannot be used (one line), or None when it can: the one validator."""
    if not isinstance(record, dict):
        return f"{RECORD} holds {kind(record)}, not an object"
    status = record.get("status")
    if status is None:
        return f"{RECORD} has no status (a stub: the harness writes a record whole, status last)"
    for key, value in record.items():
        rule = expected(key)
        if rule is not None and value is not None and not rule[0](value):
            return f"{key} is {kind(value)} ({str(value)[:40]!r}), not {rule[1]}"
    if status not in STATUSES:
        return f"status {status!r} is none of {', '.join(STATUSES)}"
    if status == "finished":
        for key in ("seed", "config_hash"):
            if record.get(key) is None:
                return f"finished, but no {key}"
        metric = record.get("selection/metric")
        if not isinstance(metric, str) or not is_number(record.get(metric)):
            return "finished, but no value of its selection metric (a stub)"
        if not any(is_number(v) for k, v in record.items() if k.startswith("test/") and k != "test/num_queries"):
            return "finished, but no test metrics (no test/recall@1, test/map@r, ...)"
    return None


def load_json(path: Path):
    """A JSON file's content; :class:`Corrupt` with the reason when it has none; FileNotFoundError passes."""
    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise Corrupt(f"unreadable {name}: {err.strerror or err}") from None
    if not data.strip():
        raise Corrupt(f"empty {name} ({len(data)} bytes)")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Corrupt(f"{name} is not UTF-8 text (a binary file?)") from None
    except (ValueError, RecursionError) as err:
        raise Corrupt(f"unreadable {name} (truncated, or not JSON): {' '.join(str(err).split())[:80]}") from None


def parse_record(path: Path) -> dict | None:
    """The record at ``path`` (None when there is none); :class:`Corrupt` when it is not a usable record."""
    try:
        record = load_json(path)
    except FileNotFoundError:
        return None
    reason = check_record(record)
    if reason:
        raise Corrupt(reason)
    return record


def read_record(run_dir: Path) -> dict | None:
    """The run's record, or None when there is none or it is damaged (only the run itself moves it aside)."""
    try:
        return parse_record(Path(run_dir) / RECORD)
    except Corrupt:
        return None


def read_epochs(run_dir: Path) -> list:
    """The rows of a run's epoch log ([] when it has none); a last line cut short is left out, any other bad line
    raises :class:`Corrupt`."""
    path = Path(run_dir) / EPOCHS
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return []
    except OSError as err:
        raise Corrupt(f"unreadable {EPOCHS}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise Corrupt(f"{EPOCHS} is not UTF-8 text (a binary file?)") from None
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:
            if number == len(lines) and not text.endswith("\n"):
                break  # the writer's line in progress (or cut by a kill): not yet a row
            raise Corrupt(f"{EPOCHS} line {number} is not JSON: {err}") from None
        if not isinstance(row, dict):
            raise Corrupt(f"{EPOCHS} line {number} holds {kind(row)}, not an object")
        for key, value in row.items():
            if (key == "epoch" or key.startswith(EPOCH_NUMBERS)) and value is not None and not is_number(value):
                raise Corrupt(f"{EPOCHS} line {number}: {key} is {kind(value)}, not a number")
        rows.append(row)
    return rows


def append_epoch(run_dir: Path, row: dict) -> None:
    """One line, flushed (rank 0, the directory's one writer)."""
    with open(Path(run_dir) / EPOCHS, "a") as f:
        f.write(json.dumps(row, default=json_default) + "\n")
        f.flush()


def truncate_epochs(run_dir: Path, last_epoch: int) -> None:
    """Drop epoch lines after ``last_epoch`` (a resumed run writes them again, exactly)."""
    try:
        rows = [r for r in read_epochs(run_dir) if r["epoch"] <= last_epoch]
    except Corrupt:  # a damaged log: the checkpoint is the truth, the rows before it are lost
        rows = []
    atomic_write_text(Path(run_dir) / EPOCHS, "".join(json.dumps(r, default=json_default) + "\n" for r in rows))


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """A nested mapping as one level of dotted keys (lists as JSON text): the record's ``config/*``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v if not isinstance(v, (list, tuple)) else json.dumps(v)
    return out
