"""What enters no mean, and where to look: records the tables cannot use (with the reason), and failed,
pruned and running runs (with their error file or directory)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.tables.render import markdown_grid

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
    "per_query_file",
    "code/numerical",
    "precision",
)
NUMBER_KEYS = ("epochs", "selected_epoch", "pruned_epoch", "wall_time_s", "train_time_s", "attempts")
METRIC_PREFIXES = ("test/", "val/", "raw/", "init/", "diag/", "test_best/")
FLAG_KEYS = ("test_best/optimistic",)
REQUIRED_WHEN_FINISHED = ("seed", "config_hash")


class Unreadable(Exception):
    """A file the tables cannot use; the message is the reason, one line."""


@dataclass(frozen=True)
class Problem:
    path: str  # the file: a record.json or an epochs.jsonl
    reason: str
    effect: str  # what the tables did with it


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
    """(test, what it should be) for a record key the tables read, or None for a key they pass through."""
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
    """Why a parsed record.json cannot enter the tables (one line), or None when it can."""
    if not isinstance(record, dict):
        return f"record.json holds {kind(record)}, not an object"
    status = record.get("status")
    if status is None:
        return "record.json has no status (a stub: the harness writes a record whole, status last)"
    for key, value in record.items():
        rule = expected(key)
        if rule is not None and value is not None and not rule[0](value):
            return f"{key} is {kind(value)} ({str(value)[:40]!r}), not {rule[1]}"
    if status not in STATUSES:
        return f"status {status!r} is none of {', '.join(STATUSES)}"
    if status == "finished":
        for key in REQUIRED_WHEN_FINISHED:
            if record.get(key) is None:
                return f"finished, but no {key}"
        if not any(is_number(v) for k, v in record.items() if k.startswith("test/") and k != "test/num_queries"):
            return "finished, but no test metrics (no test/recall@1, test/map@r, ...)"
    return None


def missing_metrics(finished: pd.DataFrame, keys: list, metrics: list) -> list:
    """Finished runs without a metric that other seeds of their group have: that cell's mean is over fewer
    seeds (and flagged), which must not pass unnoticed."""
    found = []
    for metric in metrics:
        has = finished[metric].notna()
        in_group = has.groupby([finished[k] for k in keys], dropna=False).transform("any")
        for path in finished.loc[~has & in_group, "path"]:
            found.append(
                Problem(
                    str(Path(path) / "record.json"),
                    f"finished, but no {metric}",
                    "left out of that metric's mean (flagged †)",
                )
            )
    return found


def cell(value) -> str:
    return str(value).replace("|", r"\|").replace("\n", " ")


def present(row, key) -> bool:
    value = row.get(key)
    return value is not None and not (isinstance(value, float) and value != value)


def problems_markdown(runs: pd.DataFrame, problems=(), duplicates=(), mixed=()) -> str | None:
    """The records the tables could not use, duplicate records of one run, groups that mix runs of other code,
    precision, device, data or libraries, then failed, pruned and running runs, each with where to look."""
    parts = []
    if problems:
        body = [[cell(p.path), cell(p.reason), cell(p.effect)] for p in sorted(problems, key=lambda p: p.path)]
        parts.append(
            "*files with problems*\n\n" + markdown_grid(["file", "problem", "what the tables did"], body, left=3) + "\n"
        )
    if duplicates:
        body = [[cell(d.path), cell(d.reason), cell(d.kept)] for d in sorted(duplicates, key=lambda d: d.path)]
        parts.append(
            "*duplicate records (one run, two records: left out of every mean and count)*\n\n"
            + markdown_grid(["record", "why", "the record kept"], body, left=3)
            + "\n"
        )
    if mixed:
        body = [[cell(m.group), m.key, cell(m.values), m.action] for m in mixed]
        parts.append(
            "*groups whose runs differ in code, precision, device, data or a library*\n\n"
            + markdown_grid(["group", "differs in", "values (seeds)", "what the tables did"], body, left=4)
            + "\n"
        )
    bad = runs[runs["status"] != "finished"] if "status" in runs else runs.iloc[:0]
    if not bad.empty:
        body = []
        for _, r in bad.sort_values(["status", "path"]).iterrows():
            if r["status"] == "failed":
                detail = str(r["error"])[:120] if present(r, "error") else "failed (the record names no error)"
                where = r["error_file"] if present(r, "error_file") else r["path"]
            elif r["status"] == "pruned":
                detail = f"pruned at epoch {int(r['pruned_epoch'])}" if present(r, "pruned_epoch") else "pruned"
                where = r["path"]
            else:
                epoch, ago = r.get("last_epoch"), r.get("updated_s_ago")
                detail = (
                    f"no record.json (running, or killed): last epoch {int(epoch) if pd.notna(epoch) else '-'}, "
                    f"epoch log updated {ago:.0f}s ago"
                    if pd.notna(ago)
                    else "no record.json (running, or killed)"
                )
                where = r["path"]
            name = r["name"] if present(r, "name") else Path(r["path"]).name
            body.append([r["status"], cell(name), cell(detail), cell(where)])
        parts.append(
            "*runs that enter no mean*\n\n" + markdown_grid(["status", "run", "detail", "path"], body, left=4) + "\n"
        )
    return "\n".join(parts) or None


def summary_line(problems: list, runs: pd.DataFrame, path: Path, duplicates=(), mixed=()) -> str | None:
    """The console's one line: how many problems, and where they are listed."""
    counts = runs["status"].value_counts() if "status" in runs else pd.Series(dtype=int)
    parts = [f"{len(problems)} file{'s' * (len(problems) != 1)} with a problem"] if problems else []
    parts += [f"{len(duplicates)} duplicate record{'s' * (len(duplicates) != 1)}"] if duplicates else []
    parts += [f"{len(mixed)} mixed group{'s' * (len(mixed) != 1)}"] if mixed else []
    parts += [f"{counts[s]} {s}" for s in ("failed", "pruned", "running") if counts.get(s, 0)]
    return f"problems: {', '.join(parts)}; listed in {path}" if parts else None
