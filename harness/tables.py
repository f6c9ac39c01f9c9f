"""Run records -> one pandas DataFrame -> paper tables (Markdown, LaTeX, CSV), the raw frame (parquet), plots.

    python -m harness.tables                                   # every run under results/
    python -m harness.tables --sweep digits_ablation --seeds 3 # the runs launched with sweep=digits_ablation
    python -m harness.tables results/runs/cub --rows loss regularizer --cols dataset --metrics recall@1 map@r
    python -m harness.tables --where loss=proxy_anchor --rows regularizer --x regularizer.antico_pair.weight

It reads each run directory's ``record.json`` and nothing else (JSON: nothing is unpickled, no log is
parsed); a run directory without one (running, or killed) is known by its name and ``overrides.txt``.
One row per run: status, dataset, backbone, loss, regularizer, seed, every config value flattened
(``config/<dotted key>``), validation and test metrics, diagnostics, wall and training time, ``path``.

Runs that differ only in the seed form a group. A table cell is the mean ± std (over seeds, ddof=1) of a
group's finished runs; a group with fewer seeds than expected (``--seeds``, by default the most any
group has) is marked † and cannot be bold. Config values that differ inside a row (a swept knob the
command did not name) become row columns of their own, so a cell never averages different configs.
Failed, pruned and running runs are listed apart with the path of their error and never enter a mean.

Written into ``--out`` (default ``<root>/tables/<sweep or "all">/``):

    table.md  table.tex  table.csv   rows x (dataset x metric), best per column in bold; the CSV is long
                                     and numeric (mean, std, n per group and metric)
    references.md  references.tex    the bars to clear on the same split: raw inputs, the untrained network
    delta.md  delta.tex              each regularizer minus ``none`` for the same base loss (and the rest)
    paper.md  paper.tex              published vs. reproduced, where configs carry ``published:`` numbers
    problems.md                      failed / pruned / running runs with their error file or directory
    runs.parquet                     the raw DataFrame, one row per run (``pd.read_parquet``)
    plots/*.png                      metric vs. each swept numeric knob (seed bands); training curves per group

Published numbers: a config (an experiment preset) may carry ``published: {recall@1: 69.5, source: "..."}``
(percent as printed in the paper, test split); the paper view shows them beside the reproduced mean.

Loading is cached in ``<root>/.tables_index.parquet``, keyed by each record's modification time and size,
so re-tabling 10,000 runs re-reads only the records that changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness import records
from harness.identity import NON_SEMANTIC_KEYS
from harness.io import atomic_write, atomic_write_text
from harness.errors import ConfigError, DataError

log = logging.getLogger("harness.tables")

KEY_COLUMNS = ("dataset", "backbone", "loss", "regularizer")
PERCENT_METRICS = ("recall@", "precision@", "map@r", "r_precision", "nmi")  # fractions, shown x100
LOWER_IS_BETTER = ("rho_spectrum", "intra", "intra_inter_ratio", "uniformity")  # collapse diagnostics
LABELS = {"map@r": "MAP@R", "r_precision": "RP", "nmi": "NMI"}
INDEX_FILE = ".tables_index.parquet"
SKIP_DIRS = {"checkpoints", "multirun", "tables", "bench"}
NOT_A_KNOB = tuple(f"config/{k}" for k in NON_SEMANTIC_KEYS + ("seed", "published"))
MISSING = "—"


# ----------------------------------------------------------------------------------------------- loading
def find_run_dirs(root: Path) -> list:
    """Every run directory under ``root`` (one with a record, or a config and an epoch log), not descending into one."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if records.RECORD in filenames or (records.EPOCHS in filenames and "config.yaml" in filenames):
            found.append(dirpath)
            dirnames[:] = []
        else:
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
    return found


def record_stamp(run_dir: str) -> str | None:
    try:
        st = os.stat(os.path.join(run_dir, records.RECORD))
    except FileNotFoundError:
        return None
    return f"{st.st_mtime_ns}:{st.st_size}"


def read_run(run_dir: Path) -> dict:
    """A record as a flat row: lists and dicts become JSON text (one type per column, parquet-safe)."""
    try:
        record = json.loads((run_dir / records.RECORD).read_text())
    except (OSError, json.JSONDecodeError) as err:  # records are written atomically: this is damage, not a race
        return {**names_from_dir(run_dir), "status": "failed", "error": f"unreadable record.json: {err}"}
    row = {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()}
    row.setdefault("status", "failed")
    return row


def read_unfinished(run_dir: Path) -> dict:
    """A run directory without a record: running, or killed. Known by its name, overrides and epoch log."""
    overrides = run_dir / "overrides.txt"
    epochs = run_dir / records.EPOCHS
    last_epoch, updated = None, None
    if epochs.exists():
        lines = [line for line in epochs.read_text().splitlines() if line.strip()]
        last_epoch = json.loads(lines[-1]).get("epoch") if lines else None
        updated = time.time() - epochs.stat().st_mtime
    return {
        **names_from_dir(run_dir), "status": "running", "last_epoch": last_epoch, "updated_s_ago": updated,
        "overrides": json.dumps(overrides.read_text().split() if overrides.exists() else []),
    }


def names_from_dir(run_dir: Path) -> dict:
    """dataset / loss / regularizer / backbone / seed from ``runs/<dataset>/<loss>__<regs>__<backbone>__<hash>__seed<N>``."""
    parts = run_dir.name.split("__")
    row = {"name": run_dir.name, "dataset": run_dir.parent.name}
    if len(parts) == 5 and parts[4].startswith("seed") and parts[4][4:].isdigit():
        row.update(loss=parts[0], regularizer=parts[1], backbone=parts[2], seed=int(parts[4][4:]))
    return row


def load_runs(root, cache: bool = True) -> pd.DataFrame:
    """One row per run directory under ``root`` (see the module docstring), ``path`` its directory."""
    root = Path(root)
    run_dirs = find_run_dirs(root)
    stamps = {d: record_stamp(d) for d in run_dirs}
    finished_stamps = {p: s for p, s in stamps.items() if s is not None}

    index = read_index(root) if cache else None
    kept = pd.DataFrame()
    if index is not None:
        kept = index[index["path"].map(finished_stamps) == index["_stamp"]]
    known = set(kept["path"]) if len(kept) else set()
    fresh = [{**read_run(Path(p)), "path": p, "_stamp": s} for p, s in finished_stamps.items() if p not in known]
    frame = pd.concat([kept, pd.DataFrame(fresh)], ignore_index=True) if fresh else kept
    if cache and finished_stamps and (fresh or index is None or len(kept) != len(index)):
        write_index(root, frame)

    unfinished = [{**read_unfinished(Path(p)), "path": p} for p, s in stamps.items() if s is None]
    frame = pd.concat([frame, pd.DataFrame(unfinished)], ignore_index=True) if unfinished else frame
    if frame.empty:
        return frame
    return normalise(frame.drop(columns="_stamp", errors="ignore")).sort_values("path", ignore_index=True)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give each object column one type (strings, or bools): mixed values become JSON text."""
    for col in frame.columns[frame.dtypes == object]:
        kinds = {type(v) for v in frame[col] if v is not None and v == v}
        if len(kinds) > 1 or kinds - {str, bool}:
            frame[col] = frame[col].map(lambda v: v if v is None or v != v or isinstance(v, str) else json.dumps(v))
    return frame


def read_index(root: Path) -> pd.DataFrame | None:
    path = root / INDEX_FILE
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:  # a damaged cache is rebuilt, never trusted
        log.warning("ignoring the table index %s: %s", path, err)
        return None


def write_index(root: Path, frame: pd.DataFrame) -> None:
    path = root / INDEX_FILE
    try:
        atomic_write(path, lambda tmp: normalise(frame).to_parquet(tmp, index=False))
    except Exception as err:  # the cache is an optimisation: a read-only folder or an odd column only costs speed
        log.warning("table index not written (%s): %s", path, err)


# ----------------------------------------------------------------------------------------------- selecting
def resolve_column(runs: pd.DataFrame, name: str) -> str:
    """A column by its name or its config key (``optimizer.lr`` -> ``config/optimizer.lr``)."""
    for candidate in (name, f"config/{name}", f"config/regularizer.{name}"):
        if candidate in runs.columns:
            return candidate
    close = [c for c in runs.columns if name.split(".")[-1] in c][:5]
    raise ConfigError(f"no column {name!r} in the records; pick one of {close or list(KEY_COLUMNS)}")


def select_runs(runs: pd.DataFrame, sweep: str | None = None, where=()) -> pd.DataFrame:
    """The runs of one sweep (launched with ``sweep=<name>``) and/or matching ``key=value`` filters."""
    if sweep:
        overrides = runs["overrides"].fillna("") if "overrides" in runs else pd.Series("", index=runs.index)
        runs = runs[overrides.str.contains(f'"sweep={sweep}"', regex=False)]
    for condition in where:
        key, sep, value = condition.partition("=")
        if not sep:
            raise ConfigError(f"--where {condition!r} must read key=value, e.g. --where loss=proxy_anchor")
        col = resolve_column(runs, key)
        runs = runs[matches(runs[col], value)]
    return runs


def matches(column: pd.Series, value: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column) or column.dtype == object:
        return column.map(lambda v: str(v).lower() == value.lower())
    if pd.api.types.is_numeric_dtype(column):
        try:
            return column == float(value)
        except ValueError:
            return pd.Series(False, index=column.index)
    return column == value


# ----------------------------------------------------------------------------------------------- grouping
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


def group_keys(runs: pd.DataFrame, keys: list) -> list:
    """``keys`` plus each config column that still differs inside one of their groups (a knob the user did
    not name), plus ``config_hash`` as a last resort: a group is then exactly "same config, any seed"."""
    recs = runs[runs["config_hash"].notna()] if "config_hash" in runs else runs.iloc[:0]
    if recs.empty or recs.groupby(keys, dropna=False)["config_hash"].nunique().max() <= 1:
        return keys
    candidates = [c for c in recs.columns if c.startswith("config/") and not c.startswith(NOT_A_KNOB) and c not in keys]
    varying = recs.groupby(keys, dropna=False)[candidates].nunique(dropna=False).max()
    extra = [c for c in candidates if varying[c] > 1]
    if recs.groupby(keys + extra, dropna=False)["config_hash"].nunique().max() > 1:
        extra.append("config_hash")
    return keys + extra


def summarize(runs: pd.DataFrame, keys: list, metrics: list) -> pd.DataFrame:
    """One row per group (every group that has a record): mean and std of each metric over its finished
    runs, ``n`` finished seeds, ``seeds``, and how many of its runs failed or were pruned."""
    recs = with_filled_keys(runs[runs["config_hash"].notna()] if "config_hash" in runs else runs.iloc[:0], keys)
    finished = recs[recs["status"] == "finished"]
    by = finished.groupby(keys, sort=False)
    stats = pd.concat([by[metrics].mean().add_prefix("mean/"), by[metrics].std().add_prefix("std/")], axis=1)
    stats["n"] = by["seed"].nunique()
    stats["seeds"] = by["seed"].agg(lambda s: ",".join(str(int(v)) for v in sorted(s.unique())))
    counts = recs.groupby(keys, sort=False)["status"].value_counts().unstack(fill_value=0)
    out = counts.reindex(columns=["failed", "pruned"], fill_value=0).join(stats, how="left")
    out["n"] = out["n"].fillna(0).astype(int)
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


def sort_key(value):
    """Row order: ``none`` first (the baseline), numbers by value, then names."""
    if value == "none":
        return (0, 0, "")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return (1, value, "")
    return (2, 0, str(value))


# ----------------------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """Aligned frames (index: row keys; columns: (column-key values..., metric label)) ready to render."""
    mean: pd.DataFrame
    std: pd.DataFrame
    bold: pd.DataFrame
    flagged: pd.DataFrame
    digits: dict                        # column -> decimals
    seeds: pd.Series | None = None      # per row: "3", or "2/3" when short
    caption: str = ""
    notes: list = field(default_factory=list)
    signed: bool = False                # deltas: +1.2 / -0.4


def label(metric_col: str) -> str:
    name = metric_col.split("/")[-1]
    if name.startswith("recall@"):
        return "R@" + name.split("@")[1]
    return LABELS.get(name, name)


def is_percent(metric_col: str) -> bool:
    return metric_col.split("/")[-1].startswith(PERCENT_METRICS)


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


def build_table(summary: pd.DataFrame, rows: list, cols: list, metrics: list, expected: int, digits: int = 1,
                scope: str = "test split") -> Table:
    mean = pivot(summary, rows, cols, [f"mean/{m}" for m in metrics])
    std = pivot(summary, rows, cols, [f"std/{m}" for m in metrics])
    n = pivot(summary.assign(**{f"n/{m}": summary["n"] for m in metrics}), rows, cols, [f"n/{m}" for m in metrics])
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
    notes = [f"† fewer than {expected} finished seeds (see the seeds column and the problems list)"] if flagged.any().any() else []
    over = f"{expected} seed{'s' * (expected != 1)}" if not flagged.any().any() else f"seeds ({expected} expected)"
    caption = f"mean ± std over {over}, {scope}; best per column in bold"
    return Table(mean, std, bold, flagged, col_digits, seeds, caption, notes)


def build_delta(table: Table, rows: list, scope: str = "test split", baseline: str = "none") -> Table | None:
    """Each row minus the row that has ``regularizer == none`` and the same other row keys (knobs of a
    regularizer excepted: the baseline has none)."""
    if "regularizer" not in rows:
        return None
    level = rows.index("regularizer")
    shared = [i for i, r in enumerate(rows) if r != "regularizer" and not str(r).startswith("config/regularizer")]
    mean = table.mean
    base = {tuple(t[i] for i in shared): t for t in mean.index if t[level] == baseline}
    pairs = [(t, base[tuple(t[i] for i in shared)]) for t in mean.index
             if t[level] != baseline and tuple(t[i] for i in shared) in base]
    if not pairs:
        return None
    rows_, bases = [t for t, _ in pairs], [b for _, b in pairs]
    index = pd.MultiIndex.from_tuples(rows_, names=mean.index.names)
    frame = lambda values: pd.DataFrame(values, index=index, columns=mean.columns)  # noqa: E731
    delta = frame(mean.loc[rows_].to_numpy() - mean.loc[bases].to_numpy())
    flagged = frame(table.flagged.loc[rows_].to_numpy() | table.flagged.loc[bases].to_numpy())
    none = frame(False)
    return Table(delta, delta * float("nan"), none, flagged & delta.notna(), table.digits, None,
                 f"Δ vs. no regularizer (difference of the means over seeds, same base loss), {scope}",
                 table.notes, signed=True)


def build_references(finished: pd.DataFrame, cols: list, metrics: list, digits: int = 1,
                     scope: str = "test split") -> Table | None:
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
    table.caption = f"references (raw inputs; the network before training), mean ± std over the same runs, {scope}"
    table.notes, table.seeds = [], None
    return table


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


# ----------------------------------------------------------------------------------------------- rendering
def format_value(mean, std, digits: int, signed: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    mean = round(float(mean), digits) + 0.0  # never print -0.0
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    if std == std and std is not None:  # not NaN: at least two seeds
        text += f" ± {std:.{digits}f}"
    return text


def display_name(key: str) -> str:
    return str(key).removeprefix("config/").removeprefix("regularizer.")


def constant_levels(table: Table) -> tuple:
    """Column levels (e.g. the dataset) that have one value across the table go into the caption."""
    levels = table.mean.columns.nlevels
    constant = [i for i in range(levels - 1) if table.mean.columns.get_level_values(i).nunique() == 1]
    shown = [i for i in range(levels) if i not in constant]
    title = ", ".join(str(table.mean.columns[0][i]) for i in constant)
    return shown, title


def cells(table: Table, bold, dagger: str, escape=str) -> list:
    """The body's cell texts: value (± std), the short-seeds mark, bold where best."""
    mean, std = table.mean.to_numpy(dtype=float), table.std.to_numpy(dtype=float)
    flagged, best = table.flagged.to_numpy(dtype=bool), table.bold.to_numpy(dtype=bool)
    digits = [table.digits[col] for col in table.mean.columns]
    out = []
    for r in range(len(mean)):
        line = []
        for c, d in enumerate(digits):
            text = escape(format_value(mean[r, c], std[r, c], d, table.signed)) + (dagger if flagged[r, c] else "")
            line.append(bold(text) if best[r, c] else text)
        out.append(line)
    return out


def to_markdown(table: Table) -> str:
    shown, title = constant_levels(table)
    names = [display_name(n) for n in table.mean.index.names]
    header = names + (["seeds"] if table.seeds is not None else []) + [
        " ".join(str(col[i]) for i in shown) for col in table.mean.columns]
    body = [[str(v) for v in key] + ([table.seeds.iloc[r]] if table.seeds is not None else []) + line
            for r, (key, line) in enumerate(zip(table.mean.index, cells(table, lambda t: f"**{t}**", " †")))]
    caption = f"{title}: {table.caption}" if title else table.caption
    grid = markdown_grid(header, body, left=len(names))
    return "\n".join([f"*{caption}*", "", grid, *(f"\n{n}" for n in table.notes)]) + "\n"


def markdown_grid(header: list, body: list, left: int = 1) -> str:
    """A pipe table padded to be readable as plain text too; the first ``left`` columns left-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *map(line, body)])


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
                 "†": r"$^\dagger$", "Δ": r"$\Delta$", "—": "--"}


def escape_latex(text) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table, label_name: str = "tab:ablation") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``): grouped column headers with \\cmidrule, the
    first row key printed once per block, \\midrule between blocks."""
    shown, title = constant_levels(table)
    names = [escape_latex(display_name(n)) for n in table.mean.index.names]
    lead = len(names)
    columns = [tuple(col[i] for i in shown) for col in table.mean.columns]
    lines = [r"\begin{table}[t]", r"\centering",
             f"\\caption{{{escape_latex((title + ': ' if title else '') + table.caption)}}}",
             f"\\label{{{label_name}}}", f"\\begin{{tabular}}{{{'l' * lead}{'c' * len(columns)}}}", r"\toprule"]
    for level in range(len(shown) - 1):  # grouped headers: \multicolumn over each run of equal values
        spans, rules, start = [], [], 0
        values = [c[level] for c in columns]
        while start < len(values):
            end = start
            while end + 1 < len(values) and columns[end + 1][: level + 1] == columns[start][: level + 1]:
                end += 1
            spans.append(f"\\multicolumn{{{end - start + 1}}}{{c}}{{{escape_latex(values[start])}}}")
            rules.append(f"\\cmidrule(lr){{{lead + start + 1}-{lead + end + 1}}}")
            start = end + 1
        lines += [" & ".join([""] * lead + spans) + r" \\", " ".join(rules)]
    lines += [" & ".join(names + [escape_latex(c[-1]) for c in columns]) + r" \\", r"\midrule"]
    body = cells(table, lambda t: f"\\textbf{{{t}}}", r"$^\dagger$", escape_latex)
    previous = None
    for key, line in zip(table.mean.index, body):
        first = key[0]
        if previous is not None and first != previous and lead > 1:
            lines.append(r"\midrule")
        keys = [escape_latex(v) for v in key]
        if first == previous and lead > 1:
            keys[0] = ""
        lines.append(" & ".join(keys + line) + r" \\")
        previous = first
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"\\par\\smallskip{{\\footnotesize {escape_latex(n)}}}" for n in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def grid_to_latex(header: list, body: list, caption: str, label_name: str) -> str:
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{escape_latex(caption)}}}", f"\\label{{{label_name}}}",
             f"\\begin{{tabular}}{{{'l' * len(header)}}}", r"\toprule", " & ".join(map(escape_latex, header)) + r" \\",
             r"\midrule", *(" & ".join(map(escape_latex, row)) + r" \\" for row in body), r"\bottomrule",
             r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def problems_markdown(runs: pd.DataFrame) -> str | None:
    """Failed, pruned and running runs, each with where to look."""
    bad = runs[runs["status"] != "finished"]
    if bad.empty:
        return None
    body = []
    for _, r in bad.sort_values(["status", "path"]).iterrows():
        if r["status"] == "failed":
            detail, where = str(r.get("error") or "")[:120], r.get("error_file") or r["path"]
        elif r["status"] == "pruned":
            detail, where = f"pruned at epoch {int(r['pruned_epoch'])}" if pd.notna(r.get("pruned_epoch")) else "pruned", r["path"]
        else:
            epoch = r.get("last_epoch")
            ago = r.get("updated_s_ago")
            detail = (f"no record.json (running, or killed): last epoch {int(epoch) if pd.notna(epoch) else '-'}, "
                      f"epoch log updated {ago:.0f}s ago" if pd.notna(ago) else "no record.json (running, or killed)")
            where = r["path"]
        body.append([r["status"], str(r.get("name", Path(r["path"]).name)), detail.replace("|", "/"), str(where)])
    return "*runs that enter no mean*\n\n" + markdown_grid(["status", "run", "detail", "path"], body, left=4) + "\n"


# ----------------------------------------------------------------------------------------------- the command
def make_tables(roots, out=None, sweep=None, where=(), rows=("loss", "regularizer"), cols=("dataset",),
                metrics=None, split="test", seeds=None, digits=1, plots=True, xs=(), cache=True,
                max_curves=24) -> dict:
    """Load, select, aggregate, render and write; returns the rendered texts and the written paths."""
    roots = [Path(r) for r in roots]
    frames = [f for f in (load_runs(r, cache=cache) for r in roots) if not f.empty]
    runs = normalise(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=["status", "overrides", "path"])
    runs = select_runs(runs, sweep, where)
    what = f"{', '.join(map(str, roots))}" + (f" for sweep={sweep}" if sweep else "") + (f" where {' '.join(where)}" if where else "")
    if runs.empty:
        raise DataError(f"no runs under {what}; run `make run` (or python run.py ...) first, or point at another folder")
    records_frame = runs[runs["status"] != "running"]
    if records_frame.empty or not (records_frame["status"] == "finished").any():
        print(problems_markdown(runs) or "")
        raise DataError(f"no finished run under {what} (all failed, pruned or running: listed above)")

    metric_cols = metric_columns(records_frame[records_frame["status"] == "finished"], metrics, split)
    rows = [resolve_column(runs, r) for r in rows]
    cols = [resolve_column(runs, c) for c in cols]
    keys = group_keys(records_frame, rows + cols)
    rows = rows + keys[len(rows) + len(cols):]  # knobs found varying become row columns
    summary = summarize(runs, keys, metric_cols)
    expected = int(seeds) if seeds else int(summary["n"].max())
    # what every row shares (the split, and the dataset / backbone when they are not columns) goes in captions
    shared = [str(runs[k].dropna().iloc[0]) for k in ("dataset", "backbone")
              if k in runs and k not in keys and runs[k].nunique() == 1]
    scope = ", ".join([f"{split} split", *shared])
    table = build_table(summary, rows, cols, metric_cols, expected, digits, scope)
    delta = build_delta(table, rows, scope)
    references = build_references(records_frame[records_frame["status"] == "finished"], cols, metric_cols, digits, scope)
    paper = build_paper(runs, summary, keys, split, digits)

    texts = {"table.md": to_markdown(table), "table.tex": to_latex(table)}
    if references is not None:
        texts.update({"references.md": to_markdown(references), "references.tex": to_latex(references, "tab:references")})
    if delta is not None:
        texts.update({"delta.md": to_markdown(delta), "delta.tex": to_latex(delta, "tab:delta")})
    if paper is not None:
        texts.update({"paper.md": "*published vs. reproduced*\n\n" + markdown_grid(*paper, left=len(keys) + 1) + "\n",
                      "paper.tex": grid_to_latex(*paper, "published vs. reproduced", "tab:paper")})
    problems = problems_markdown(runs)
    if problems:
        texts["problems.md"] = problems
    counts = runs["status"].value_counts()
    line = (f"{len(runs)} runs ({', '.join(f'{counts.get(s, 0)} {s}' for s in ('finished', 'failed', 'pruned', 'running'))})"
            f", {len(summary)} groups, {expected} seeds expected")

    out = Path(out) if out else roots[0] / "tables" / (sweep or "all")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    long = summary.rename(columns={k: display_name(k) for k in keys})
    atomic_write_text(out / "table.csv", long.to_csv(index=False))
    runs.to_parquet(out / "runs.parquet", index=False)
    written += [out / "table.csv", out / "runs.parquet"]
    if plots:
        from harness.plots import save_plots

        knobs = [resolve_column(runs, x) for x in xs] or [k for k in keys if k.startswith("config/")
                                                         and pd.api.types.is_numeric_dtype(runs[k])]
        written += save_plots(runs[runs["status"] == "finished"], keys, knobs, metric_cols, out / "plots",
                              max_curves=max_curves)
    return {"texts": texts, "line": line, "written": written, "out": out, "runs": runs, "summary": summary,
            "table": table, "delta": delta}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.tables", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("roots", nargs="*", default=[os.environ.get("HARNESS_RESULTS", "results")],
                   help="results folders (or any folder of run directories); default: results/")
    p.add_argument("--sweep", help="only the runs launched with sweep=NAME (python run.py -m sweep=NAME)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="only runs whose column (or config key) equals VALUE; repeatable")
    p.add_argument("--rows", nargs="+", default=["loss", "regularizer"], help="row columns (default: loss regularizer)")
    p.add_argument("--cols", nargs="*", default=["dataset"], help="column groups (default: dataset)")
    p.add_argument("--metrics", nargs="+", help="metrics (default: every recall@K, map@r, nmi); "
                   "names are of --split, or full columns like diag/test/coding_rate")
    p.add_argument("--split", default="test", choices=["test", "val", "init/test", "raw/test"])
    p.add_argument("--seeds", type=int, help="seeds each group should have (default: the most any group has)")
    p.add_argument("--digits", type=int, default=1, help="decimals of percent metrics (default 1)")
    p.add_argument("--out", help="output folder (default: <root>/tables/<sweep or all>)")
    p.add_argument("--x", dest="xs", nargs="+", default=[], help="numeric knobs to plot metrics against "
                   "(default: the numeric knobs found varying)")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="re-read every record.json")
    p.add_argument("--max-curves", type=int, default=24, help="training-curve plots at most (one per group)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    from harness.cli import exit_on_user_error

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with exit_on_user_error():
        result = make_tables(args.roots, out=args.out, sweep=args.sweep, where=args.where, rows=args.rows,
                             cols=args.cols, metrics=args.metrics, split=args.split, seeds=args.seeds,
                             digits=args.digits, plots=args.plots, xs=args.xs, cache=args.cache,
                             max_curves=args.max_curves)
    texts = result["texts"]
    for name in ("table.md", "references.md", "delta.md", "paper.md", "problems.md"):
        if name in texts:
            print(texts[name])
    print(f"{result['line']}\ntables, CSV, parquet and plots: {result['out']}/")


if __name__ == "__main__":
    main()
