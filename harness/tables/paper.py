"""Published vs. reproduced, for the groups whose config carries ``published.<metric>`` numbers (percent as
printed in the paper, with ``published.source``, ``.table`` and ``.arxiv`` naming where).

Where runs also recorded the authors' selection (``test_best/<metric>``: the metrics of each run's best
test epoch, the selection the papers used), the view shows, per group and metric: published | reproduced
with the authors' selection (marked ‡, optimistic: chosen on the test split) | reproduced with validation
selection (``test/<metric>``: the epoch chosen on the class-disjoint validation split), each mean ± std over
its seeds."""

from __future__ import annotations

import pandas as pd

from harness.tables.aggregate import summarize, with_filled_keys
from harness.tables.build import is_percent, label, sort_key
from harness.tables.render import Grid, display_name, format_value

META = ("source", "table", "arxiv")  # published.<these> say where the numbers are printed
AUTHORS = "test_best"  # record keys of the authors' selection: test_best/<metric>
OPTIMISTIC = (
    "‡ optimistic: the authors' selection (test_best/*), each run's best test epoch, a model chosen on "
    "the test split. Validation selection (test/*): the epoch chosen on the class-disjoint validation "
    "split. Δ: validation selection - published. Seeds: the runs with validation selection; (N ‡): those "
    "that recorded the authors' selection, where fewer."
)


def published_columns(runs: pd.DataFrame) -> list:
    """``config/published.<metric>`` columns that hold numbers."""
    return [
        c
        for c in runs.columns
        if c.startswith("config/published.")
        and c.removeprefix("config/published.") not in META
        and pd.api.types.is_numeric_dtype(runs[c])
    ]


def as_printed(value: float, digits: int) -> str:
    """A published number with at least ``digits`` decimals and never fewer than it was given with."""
    text = repr(float(value))
    given = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return f"{float(value):.{max(digits, given)}f}"


def where_printed(row) -> str:
    """``source, Table N, arXiv ID`` from the published fields a group has."""
    parts = []
    for key, prefix in (("source", ""), ("table", "Table "), ("arxiv", "arXiv ")):
        value = row.get(f"config/published.{key}")
        if value is None or (isinstance(value, float) and value != value) or str(value) == "":
            continue
        text = str(value)
        parts.append(text if text.lower().startswith(prefix.lower()) else prefix + text)
    return ", ".join(parts)


def as_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def build_paper(runs: pd.DataFrame, summary: pd.DataFrame, keys: list, split: str, digits: int = 1) -> Grid | None:
    """Published vs. reproduced, one row per group and published metric (see the module docstring)."""
    cols = published_columns(runs)
    if not cols:
        return None
    meta = [f"config/published.{m}" for m in META if f"config/published.{m}" in runs]
    published = with_filled_keys(runs[runs["status"] != "running"], keys).groupby(keys, sort=False)[cols + meta].first()
    metrics = {col: (m if "/" in (m := col.removeprefix("config/published.")) else f"{split}/{m}") for col in cols}
    best = {m: f"{AUTHORS}/{m.removeprefix('test/')}" for m in metrics.values() if m.startswith("test/")}
    best = {m: b for m, b in best.items() if b in runs and runs[b].notna().any()}
    merged = summary.set_index(keys).join(published, how="inner")
    if best:
        authors = summarize(runs, keys, list(best.values())).set_index(keys)
        merged = merged.join(authors[[c for c in authors.columns if c.startswith(("mean/", "std/", "n/"))]])
    body = []
    for key, row in sorted(merged.iterrows(), key=lambda item: [sort_key(v) for v in as_tuple(item[0])]):
        key = as_tuple(key)
        for col, metric in metrics.items():
            if pd.isna(row[col]):
                continue
            scale = 100.0 if is_percent(metric) else 1.0
            mean, std = row.get(f"mean/{metric}", float("nan")) * scale, row.get(f"std/{metric}", float("nan")) * scale
            diff = format_value(mean - float(row[col]), float("nan"), digits, signed=True)
            seeds = f"{int(row['n'])}"
            cells = [as_printed(row[col], digits), format_value(mean, std, digits), diff]
            if best:
                b = best.get(metric, "")
                b_mean, b_std = (row.get(f"{s}/{b}", float("nan")) * scale for s in ("mean", "std"))
                b_n = int(row[f"n/{b}"]) if pd.notna(row.get(f"n/{b}")) and pd.notna(b_mean) else 0
                cells.insert(1, format_value(b_mean, b_std, digits))
                seeds += f" ({b_n} ‡)" if 0 < b_n != int(row["n"]) else ""
            body.append([*map(str, key), label(metric), *cells, seeds, where_printed(row)])
    reproduced = ["authors' selection ‡", "validation selection"] if best else ["reproduced"]
    header = [display_name(k) for k in keys] + ["metric", "published", *reproduced, "Δ", "seeds", "source"]
    return Grid(header, body, [OPTIMISTIC] if best else [])
