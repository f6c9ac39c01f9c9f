"""The paper view: published | authors' protocol ‡ | clean protocol, for every group of a paper preset.

A group belongs to a paper when its config names where the paper's numbers are printed (``published.source``:
every conf/experiment paper preset and each of its arms, conf/experiment/arms/). Its rows are the metrics the
paper publishes for it (``published.<metric>``, percent as printed), or its selection metric with the
published column empty where no number is known. Columns, each mean ± std over its seeds of ``test/<metric>``:

    published             the paper's number (— where unknown), as printed
    authors' protocol ‡   protocol=authors: every training class trained on, the epoch chosen on the test split
                          (what the papers do and report): optimistic, and the only fair match for "published"
    clean protocol        the default: the epoch chosen on a class-disjoint validation split carved from the
                          training classes, the test split scored once
    Δ ‡, Δ clean          each minus published
    Reality Check         where the runs hold it (protocol=reality_check): separated and concatenated

No cell pools two protocols. The released baseline commands (arm=released_baseline) are rows of their own.
"""

from __future__ import annotations

import pandas as pd

from harness.tables.aggregate import summarize, with_filled_keys
from harness.tables.build import is_percent, label, sort_key
from harness.tables.protocols import AUTHORS, CLEAN, CONCATENATED, SEPARATED
from harness.tables.render import MISSING, Grid, display_name, format_value

META = ("source", "table", "arxiv", "arm", "command", "setting")  # published.<these> describe, they are no number
COLUMNS = ((AUTHORS, "authors' protocol ‡"), (CLEAN, "clean protocol"))
EXTRA = ((SEPARATED, "Reality Check, separated"), (CONCATENATED, "Reality Check, concatenated"))
NOTE = (
    "‡ authors' protocol (protocol=authors): every training class trained on, the epoch chosen on the test split, "
    "as the papers report: optimistic. Clean protocol: the epoch chosen on a class-disjoint validation split, the "
    "test split scored once. Δ: minus published. Seeds: per protocol. Released baselines (arm=released_baseline) "
    "are their own rows, never the paired baseline."
)


def published_columns(runs: pd.DataFrame) -> list:
    """``config/published.<metric>`` columns that hold numbers."""
    return [
        c
        for c in runs.columns
        if c.startswith("config/published.")
        and c.removeprefix("config/published.") not in META
        and pd.api.types.is_numeric_dtype(runs[c])
        and not pd.api.types.is_bool_dtype(runs[c])
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
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)  # 2, not 2.0
        parts.append(text if text.lower().startswith(prefix.lower()) else prefix + text)
    return ", ".join(parts)


def as_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def build_paper(runs: pd.DataFrame, keys: list, split: str = "test", digits: int = 1) -> Grid | None:
    """One row per paper group and metric: published | authors' protocol ‡ | clean protocol (see the docstring)."""
    if "config/published.source" not in runs or "protocol" not in runs:
        return None
    paper = runs[runs["config/published.source"].notna() & (runs["status"] != "running")]
    if paper.empty:
        return None
    group = [k for k in keys if k != "protocol"]
    paper = with_filled_keys(paper, group)
    cols = published_columns(paper)
    meta = [f"config/published.{m}" for m in META if f"config/published.{m}" in paper]
    published = paper.groupby(group, sort=False)[cols + meta].first()
    chosen = paper.groupby(group, sort=False)["selection/metric"].first() if "selection/metric" in paper else None
    rows = []
    for key, row in sorted(published.iterrows(), key=lambda item: [sort_key(v) for v in as_tuple(item[0])]):
        metrics = [f"{split}/{c.removeprefix('config/published.')}" for c in cols if pd.notna(row[c])]
        if not metrics:  # nothing published for it: its selection metric, the published column empty
            metric = str(chosen[key]).split("/", 1)[-1] if chosen is not None and pd.notna(chosen[key]) else "recall@1"
            metrics = [f"{split}/{metric}"]
        rows += [(as_tuple(key), row, metric) for metric in metrics]
    wanted = sorted({metric for _, _, metric in rows if metric in paper})
    extra = [(p, name) for p, name in EXTRA if (paper["protocol"] == p).any()]
    stats = {}
    for protocol, _ in COLUMNS + tuple(extra):
        part = paper[paper["protocol"] == protocol]
        stats[protocol] = summarize(part, group, wanted).set_index(group) if not part.empty else pd.DataFrame()
    body = [paper_row(key, row, metric, stats, extra, digits) for key, row, metric in rows]
    header = [display_name(k) for k in group] + ["metric", "published"]
    header += [name for _, name in COLUMNS] + ["Δ ‡", "Δ clean"] + [name for _, name in extra] + ["seeds", "source"]
    return Grid(header, body, [NOTE])


def paper_row(key: tuple, row, metric: str, stats: dict, extra: list, digits: int) -> list:
    name = metric.split("/", 1)[1]
    number = row.get(f"config/published.{name}")
    scale = 100.0 if is_percent(metric) else 1.0

    def cell(protocol):
        frame = stats.get(protocol)
        if frame is None or frame.empty or key not in frame.index or f"mean/{metric}" not in frame:
            return float("nan"), float("nan"), 0
        found = frame.loc[key] if len(key) > 1 else frame.loc[key[0]]
        n = int(found.get(f"n/{metric}", found.get("n", 0)) or 0)
        return found[f"mean/{metric}"] * scale, found[f"std/{metric}"] * scale, n

    values = {p: cell(p) for p, _ in COLUMNS + tuple(extra)}
    have = pd.notna(number)
    cells = [*map(str, key), label(metric), as_printed(number, digits) if have else MISSING]
    cells += [format_value(m, s, digits) for m, s, _ in (values[p] for p, _ in COLUMNS)]
    cells += [
        format_value(values[p][0] - float(number), float("nan"), digits, signed=True) if have else MISSING
        for p, _ in COLUMNS
    ]
    cells += [format_value(*values[p][:2], digits) for p, _ in extra]
    seeds = ", ".join(
        f"{n} {'‡' if p == AUTHORS else p.split(' ')[-1].strip('()')}" for p, (_, _, n) in values.items() if n
    )
    return cells + [seeds or "0", where_printed(row)]
