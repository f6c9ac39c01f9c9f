"""Two records of one identity are one run: a copied run directory must not shift a mean or a seed count.

A run's identity is its digest (``digest`` where records carry it; else dataset, ``config_hash`` and seed, the
name the run directory is made of). Of the records of one identity the tables keep one: a finished one before a
failed or pruned one, then the newest (``finished_at``), then the one that sits where it was written (its
``run_dir`` is its path: the original, not a copy). The others are listed in problems.md and enter nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.tables.layout import RECORD


@dataclass(frozen=True)
class Duplicate:
    path: str  # the record left out
    kept: str  # the record of the same identity that the tables use
    reason: str


def identity_columns(runs: pd.DataFrame) -> list:
    if "digest" in runs and runs["digest"].notna().any():
        return ["digest", "seed"]
    return [c for c in ("dataset", "config_hash", "seed") if c in runs]


def drop_duplicates(runs: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """``runs`` with one record per identity, and the :class:`Duplicate` s left out."""
    if "config_hash" not in runs or runs.empty:
        return runs, []
    keys = identity_columns(runs)
    recorded = runs[runs["config_hash"].notna() & runs["status"].isin(("finished", "failed", "pruned"))]
    if recorded.empty or not recorded.duplicated(keys, keep=False).any():
        return runs, []
    ranked = recorded.assign(
        _finished=recorded["status"].eq("finished"),
        _when=recorded["finished_at"].fillna("") if "finished_at" in recorded else "",
        _home=(recorded["run_dir"] == recorded["path"]) if "run_dir" in recorded else False,
    ).sort_values(["_finished", "_when", "_home", "path"], ascending=[False, False, False, True])
    dropped, found = [], []
    for _, group in ranked.groupby(keys, sort=False, dropna=False):
        if len(group) < 2:
            continue
        kept = group.iloc[0]
        for _, other in group.iloc[1:].iterrows():
            why = f"another record of the same run (identity {kept['config_hash']}, seed {int(kept['seed'])}): " + (
                "a copied run directory" if other.get("run_dir") != other["path"] else "an older record"
            )
            found.append(Duplicate(str(Path(other["path"]) / RECORD), str(Path(kept["path"]) / RECORD), why))
            dropped.append(other.name)
    return runs.drop(index=dropped), found
