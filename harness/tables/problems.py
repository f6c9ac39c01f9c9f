"""What enters no mean, and where to look: records the tables cannot use (with the reason), and failed,
pruned and running runs (with their error file or directory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.tables.render import markdown_grid


@dataclass(frozen=True)
class Problem:
    path: str  # the file: a record.json or an epochs.jsonl
    reason: str
    effect: str  # what the tables did with it


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


def problems_markdown(runs: pd.DataFrame, problems=()) -> str | None:
    """The records the tables could not use, then failed, pruned and running runs, each with where to look."""
    parts = []
    if problems:
        body = [[cell(p.path), cell(p.reason), cell(p.effect)] for p in sorted(problems, key=lambda p: p.path)]
        parts.append(
            "*files with problems*\n\n" + markdown_grid(["file", "problem", "what the tables did"], body, left=3) + "\n"
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


def summary_line(problems: list, runs: pd.DataFrame, path: Path) -> str | None:
    """The console's one line: how many problems, and where they are listed."""
    counts = runs["status"].value_counts() if "status" in runs else pd.Series(dtype=int)
    parts = [f"{len(problems)} file{'s' * (len(problems) != 1)} with a problem"] if problems else []
    parts += [f"{counts[s]} {s}" for s in ("failed", "pruned", "running") if counts.get(s, 0)]
    return f"problems: {', '.join(parts)}; listed in {path}" if parts else None
