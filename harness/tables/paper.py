"""Published vs. reproduced: the groups whose config carries ``published.<metric>`` numbers."""

from __future__ import annotations

import pandas as pd

from harness.tables.aggregate import with_filled_keys
from harness.tables.build import is_percent, label
from harness.tables.render import display_name, format_value


def build_paper(runs: pd.DataFrame, summary: pd.DataFrame, keys: list, split: str, digits: int = 1):
    """(header, body) of published vs. reproduced, for groups whose config carries ``published.<metric>``."""
    cols = [c for c in runs.columns if c.startswith("config/published.") and c != "config/published.source"]
    if not cols:
        return None
    published = with_filled_keys(runs[runs["status"] != "running"], keys).groupby(keys, sort=False)[
        cols + (["config/published.source"] if "config/published.source" in runs else [])].first()
    merged = summary.set_index(keys).join(published, how="inner")
    body = []
    for key, row in merged.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        for col in cols:
            if pd.isna(row[col]):
                continue
            metric = col.removeprefix("config/published.")
            metric = metric if "/" in metric else f"{split}/{metric}"
            mean, std = row.get(f"mean/{metric}", float("nan")), row.get(f"std/{metric}", float("nan"))
            scale = 100.0 if is_percent(metric) else 1.0
            reproduced = format_value(mean * scale, std * scale, digits)
            diff = format_value(mean * scale - float(row[col]), float("nan"), digits, signed=True)
            body.append([*map(str, key), label(metric), f"{float(row[col]):.{digits}f}", reproduced, diff,
                         f"{int(row['n'])}", source if isinstance(source := row.get("config/published.source"), str) else ""])
    header = [display_name(k) for k in keys] + ["metric", "published", "reproduced", "Δ", "seeds", "source"]
    return header, body
