"""Groups of runs that differ only in the seed, and their mean, std and 95% t interval over the finished seeds."""

from __future__ import annotations

import pandas as pd

from harness.errors import ConfigError
from harness.tables.layout import NON_SEMANTIC_KEYS
from harness.tables.render import MISSING
from harness.tables.stats import t_interval

NOT_A_KNOB = tuple(f"config/{k}" for k in NON_SEMANTIC_KEYS + ("seed", "published"))


def metric_columns(runs: pd.DataFrame, metrics=None, split: str = "test") -> list:
    """``split/metric`` columns; by default every Recall@K, MAP@R and NMI the finished runs have."""
    if metrics:
        cols = [m if "/" in m else f"{split}/{m}" for m in metrics]
        missing = [c for c in cols if c not in runs.columns]
        if missing:
            have = sorted(c.split("/", 1)[1] for c in runs.columns if c.startswith(f"{split}/"))
            raise ConfigError(f"no metric {missing} in the records; pick from {have}")
        return cols
    recalls = sorted((c for c in runs.columns if c.startswith(f"{split}/recall@")), key=lambda c: int(c.split("@")[1]))
    return recalls + [c for c in (f"{split}/map@r", f"{split}/nmi") if c in runs.columns]


def group_keys(runs: pd.DataFrame, keys: list, last_resort: bool = True) -> list:
    """``keys`` plus each config column that still differs inside one of their groups (a knob the user did
    not name), plus ``config_hash`` as a last resort (unless ``last_resort`` is off: ``--allow-mixed data``
    keeps runs on other data, whose hashes differ, together): a group is then exactly "same config, any seed"."""
    recs = runs[runs["config_hash"].notna()] if "config_hash" in runs else runs.iloc[:0]
    if recs.empty or recs.groupby(keys, dropna=False)["config_hash"].nunique().max() <= 1:
        return keys
    candidates = [c for c in recs.columns if c.startswith("config/") and not c.startswith(NOT_A_KNOB) and c not in keys]
    varying = recs.groupby(keys, dropna=False)[candidates].nunique(dropna=False).max()
    extra = [c for c in candidates if varying[c] > 1]
    if last_resort and recs.groupby(keys + extra, dropna=False)["config_hash"].nunique().max() > 1:
        extra.append("config_hash")
    return keys + extra


def summarize(runs: pd.DataFrame, keys: list, metrics: list) -> pd.DataFrame:
    """One row per group (every group that has a record): mean, std and the half-width of the 95% Student-t
    interval (``ci95/<metric>``) of each metric over its finished runs, ``n`` finished seeds (``n/<metric>``:
    those with that metric), ``seeds``, and how many of its runs failed or were pruned."""
    recs = with_filled_keys(runs[runs["config_hash"].notna()] if "config_hash" in runs else runs.iloc[:0], keys)
    finished = recs[recs["status"] == "finished"]
    by = finished.groupby(keys, sort=False)
    stats = pd.concat(
        [
            by[metrics].mean().add_prefix("mean/"),
            by[metrics].std().add_prefix("std/"),
            by[metrics].agg(lambda v: t_interval(v)[1]).add_prefix("ci95/"),
        ],
        axis=1,
    )
    stats["n"] = by["seed"].nunique()
    stats["seeds"] = by["seed"].agg(lambda s: ",".join(str(int(v)) for v in sorted(s.unique())))
    for m in metrics:  # seeds with a value; a metric that none of a group's runs has (another dataset's) is not short
        have = finished[finished[m].notna()].groupby(keys, sort=False)["seed"].nunique()
        stats[f"n/{m}"] = have.reindex(stats.index).fillna(stats["n"])
    counts = recs.groupby(keys, sort=False)["status"].value_counts().unstack(fill_value=0)
    out = counts.reindex(columns=["failed", "pruned"], fill_value=0).join(stats, how="left")
    for col in ["n"] + [f"n/{m}" for m in metrics]:
        out[col] = out[col].fillna(0).astype(int)
    return out.reset_index()


def with_filled_keys(runs: pd.DataFrame, keys: list) -> pd.DataFrame:
    """Missing key values (a knob a config does not have) become a visible placeholder, not a dropped group."""
    runs = runs.copy()
    for k in keys:
        if k not in runs:
            runs[k] = MISSING
        elif runs[k].isna().any():
            runs[k] = runs[k].astype(object).where(runs[k].notna(), MISSING)
    return runs
