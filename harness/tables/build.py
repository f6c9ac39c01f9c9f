"""The views, as :class:`Table` s ready to render: the main table (mean ± the half-width of its 95% Student-t
interval over seeds, the highest mean per column in bold, short seeds flagged) and the reference rows (raw
inputs, the untrained network). The paired Δ view is harness.tables.significance's."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from harness.tables.aggregate import summarize
from harness.tables.render import Table

PERCENT_METRICS = ("recall@", "precision@", "map@r", "r_precision", "nmi")  # fractions, shown x100
LOWER_IS_BETTER = ("rho_spectrum", "intra", "intra_inter_ratio", "uniformity")  # collapse diagnostics
LABELS = {"map@r": "MAP@R", "r_precision": "RP", "nmi": "NMI"}


def label(metric_col: str) -> str:
    name = metric_col.split("/")[-1]
    if name.startswith("recall@"):
        return "R@" + name.split("@")[1]
    return LABELS.get(name, name)


def is_percent(metric_col: str) -> bool:
    return metric_col.split("/")[-1].startswith(PERCENT_METRICS)


def sort_key(value):
    """Row order: ``none`` first (the baseline), numbers by value, then names."""
    if value == "none":
        return (0, 0, "")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return (1, value, "")
    return (2, 0, str(value))


def pivot(summary: pd.DataFrame, rows: list, cols: list, values: list) -> pd.DataFrame:
    """rows x (column-key values..., metric label), rows sorted with ``none`` first."""
    frame = summary.set_index(rows + cols)[values]
    frame.columns = [label(v.split("/", 1)[1]) for v in values]
    if cols:
        frame = frame.unstack(cols)
        frame.columns = frame.columns.reorder_levels(list(range(1, len(cols) + 1)) + [0])
        order = sorted(dict.fromkeys(c[:-1] for c in frame.columns), key=lambda t: [sort_key(v) for v in t])
        metric_order = list(dict.fromkeys(frame.columns.get_level_values(-1)))
        frame = frame.reindex(columns=pd.MultiIndex.from_tuples([(*o, m) for o in order for m in metric_order]))
    else:
        frame.columns = pd.MultiIndex.from_tuples([(c,) for c in frame.columns])
    if not isinstance(frame.index, pd.MultiIndex):
        frame.index = pd.MultiIndex.from_arrays([frame.index], names=rows)
    return frame.loc[sorted(frame.index, key=lambda t: [sort_key(v) for v in t])]


def best_mask(mean: pd.DataFrame, eligible: pd.DataFrame, digits: dict, lower=()) -> pd.DataFrame:
    """The best cell of each column among eligible rows, compared as printed (ties are all bold)."""
    bold = pd.DataFrame(False, index=mean.index, columns=mean.columns)
    for col in mean.columns:
        shown = mean[col].where(eligible[col]).round(digits[col]).dropna()
        if len(shown) >= 2:
            best = shown.min() if col[-1] in lower else shown.max()
            bold.loc[shown.index[shown == best], col] = True
    return bold


def build_table(
    summary: pd.DataFrame,
    rows: list,
    cols: list,
    metrics: list,
    expected: int,
    digits: int = 1,
    scope: str = "test split",
) -> Table:
    mean = pivot(summary, rows, cols, [f"mean/{m}" for m in metrics])
    std = pivot(summary, rows, cols, [f"ci95/{m}" for m in metrics])  # the ± of a cell: the t interval's half-width
    n = pivot(summary, rows, cols, [f"n/{m}" for m in metrics])
    scale = {label(m): 100.0 if is_percent(m) else 1.0 for m in metrics}
    decimals = {label(m): digits if is_percent(m) else 3 for m in metrics}
    for col in mean.columns:
        mean[col] *= scale[col[-1]]
        std[col] *= scale[col[-1]]
    keep = [c for c in mean.columns if mean[c].notna().any()]  # a metric a dataset does not have
    mean, std, n = mean[keep], std[keep], n[keep].fillna(0)
    flagged = (n < expected) & mean.notna()
    col_digits = {c: decimals[c[-1]] for c in keep}
    lower = {label(m) for m in metrics if m.split("/")[-1] in LOWER_IS_BETTER}
    bold = best_mask(mean, ~flagged & mean.notna(), col_digits, lower)
    row_n = n.min(axis=1).astype(int)
    seeds = row_n.map(lambda k: str(k) if k >= expected else f"{k}/{expected}")
    notes = (
        [f"† fewer than {expected} finished seeds (see the seeds column and the problems list)"]
        if flagged.any().any()
        else []
    )
    over = f"n = {expected} seed{'s' * (expected != 1)}" if not flagged.any().any() else f"seeds ({expected} expected)"
    caption = (
        f"mean ± 95% CI over {over} (Student t, n - 1 degrees of freedom), {scope}; "
        f"highest mean per column in bold (not a test: see the paired Δ)"
    )
    return Table(mean, std, bold, flagged, col_digits, seeds, caption, notes)


def build_references(
    finished: pd.DataFrame, cols: list, metrics: list, digits: int = 1, scope: str = "test split"
) -> Table | None:
    """The bars a trained embedding must clear, on the same test split: the raw inputs (vector datasets) and
    the untrained network (per backbone), mean ± std over the same finished runs."""
    parts = []
    for prefix, name in (("raw", "raw inputs"), ("init", "untrained")):
        sources = [m.replace("test/", f"{prefix}/test/", 1) for m in metrics]
        if not any(c in finished for c in sources):
            continue
        part = finished[cols + ["seed", "status", "backbone", "config_hash"]].copy()
        part["reference"] = name if prefix == "raw" else "untrained " + part["backbone"].astype(str)
        part[metrics] = finished.reindex(columns=sources).to_numpy()
        parts.append(part)
    if not parts or not all(m.startswith("test/") for m in metrics):
        return None
    refs = pd.concat(parts, ignore_index=True)
    table = build_table(summarize(refs, ["reference"] + cols, metrics), ["reference"], cols, metrics, 1, digits)
    table.bold.loc[:, :] = False
    table.flagged.loc[:, :] = False
    table.caption = f"references (raw inputs; the network before training), mean ± 95% CI over the same runs, {scope}"
    table.notes, table.seeds = [], None
    return table
