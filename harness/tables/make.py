"""The pipeline: load, select, aggregate, build the views, render them and write the folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.errors import DataError
from harness.tables.aggregate import group_keys, metric_columns, summarize
from harness.tables.build import build_delta, build_references, build_table
from harness.tables.layout import atomic_write, atomic_write_text
from harness.tables.load import normalise, scan
from harness.tables.paper import build_paper
from harness.tables.problems import missing_metrics, problems_markdown, summary_line
from harness.tables.protocols import (
    protocol_notes,
    protocol_rows,
    protocol_scope,
    read_protocols,
    without_released,
)
from harness.tables.render import grid_to_latex, grid_to_markdown, to_csv, to_latex, to_markdown
from harness.tables.select import resolve_column, select_runs

OPTIONAL = ("references.md", "references.tex", "delta.md", "delta.tex", "paper.md", "paper.tex", "problems.md")


def make_tables(
    roots,
    out=None,
    sweep=None,
    where=(),
    rows=("loss", "regularizer"),
    cols=("dataset",),
    metrics=None,
    split="test",
    seeds=None,
    digits=1,
    plots=True,
    xs=(),
    cache=True,
    max_curves=24,
) -> dict:
    """Load, select, aggregate, render and write; returns the rendered texts and the written paths."""
    roots = [Path(r) for r in roots]
    loaded = [scan(r, cache=cache) for r in roots]
    problems = [p for part in loaded for p in part.problems]
    frames = [part.runs for part in loaded if not part.runs.empty]
    runs = (
        normalise(pd.concat(frames, ignore_index=True))
        if frames
        else pd.DataFrame(columns=["status", "overrides", "path"])
    )
    runs = select_runs(runs, sweep, where)
    runs, fold_problems = read_protocols(runs)  # the protocol column; Reality Check folds read back as models
    problems += fold_problems
    what = (
        f"{', '.join(map(str, roots))}"
        + (f" for sweep={sweep}" if sweep else "")
        + (f" where {' '.join(where)}" if where else "")
    )
    if runs.empty and not problems:
        raise DataError(
            f"no runs under {what}; run `make run` (or python run.py ...) first, or point at another folder"
        )
    records_frame = runs[runs["status"] != "running"]
    if not (records_frame["status"] == "finished").any():
        print(problems_markdown(runs, problems) or "")
        unread = f", {len(problems)} with records that cannot be read" if problems else ""
        raise DataError(f"no finished run under {what} (all failed, pruned or running{unread}: listed above)")

    metric_cols = metric_columns(records_frame[records_frame["status"] == "finished"], metrics, split)
    rows = protocol_rows(runs, [resolve_column(runs, r) for r in rows])
    cols = [resolve_column(runs, c) for c in cols]
    keys = group_keys(records_frame, rows + cols)
    rows = rows + keys[len(rows) + len(cols) :]  # knobs found varying become row columns
    summary = summarize(runs, keys, metric_cols)
    finished = records_frame[records_frame["status"] == "finished"]
    problems += missing_metrics(finished, keys, metric_cols)
    expected = int(seeds) if seeds else int(summary["n"].max())
    # what every row shares (the split, and the dataset / backbone when they are not columns) goes in captions
    shared = [
        str(runs[k].dropna().iloc[0])
        for k in ("dataset", "backbone")
        if k in runs and k not in keys and runs[k].nunique() == 1
    ]
    scope = ", ".join([f"{split} split", *shared, *protocol_scope(runs, keys)])
    table = build_table(summary, rows, cols, metric_cols, expected, digits, scope)
    table.notes += protocol_notes(runs)
    delta = without_released(build_delta(table, rows, scope), rows)
    references = build_references(finished, cols, metric_cols, digits, scope)
    paper = build_paper(runs, keys, split, digits)

    texts = {"table.md": to_markdown(table), "table.tex": to_latex(table)}
    if references is not None:
        texts.update(
            {"references.md": to_markdown(references), "references.tex": to_latex(references, "tab:references")}
        )
    if delta is not None:
        texts.update({"delta.md": to_markdown(delta), "delta.tex": to_latex(delta, "tab:delta")})
    if paper is not None:
        texts.update(
            {
                "paper.md": grid_to_markdown(paper, "published vs. reproduced", left=len(keys) + 1),
                "paper.tex": grid_to_latex(paper, "published vs. reproduced", "tab:paper"),
            }
        )
    counts = runs["status"].value_counts()
    line = (
        f"{len(runs)} runs ("
        f"{', '.join(f'{counts.get(s, 0)} {s}' for s in ('finished', 'failed', 'pruned', 'running'))})"
        f", {len(summary)} groups, {expected} seeds expected"
    )

    out = Path(out) if out else roots[0] / "tables" / (sweep or "all")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    atomic_write_text(out / "table.csv", to_csv(summary, keys))
    atomic_write(out / "runs.parquet", lambda tmp: runs.to_parquet(tmp, index=False))
    written += [out / "table.csv", out / "runs.parquet"]
    if plots:
        from harness.tables.plots import save_plots

        knobs = [resolve_column(runs, x) for x in xs] or [
            k for k in keys if k.startswith("config/") and pd.api.types.is_numeric_dtype(runs[k])
        ]
        written += save_plots(
            runs[runs["status"] == "finished"], keys, knobs, metric_cols, out / "plots", problems, max_curves=max_curves
        )
    listing = problems_markdown(runs, problems)
    if listing:  # last: the plots may have found an epoch log they could not read
        texts["problems.md"] = listing
        atomic_write_text(out / "problems.md", listing)
        written.append(out / "problems.md")
    for name in set(OPTIONAL) - set(texts):  # a view an earlier call wrote here and this one has not: stale
        (out / name).unlink(missing_ok=True)
    return {
        "texts": texts,
        "line": line,
        "written": written,
        "out": out,
        "runs": runs,
        "summary": summary,
        "table": table,
        "delta": delta,
        "problems": problems,
        "problems_line": summary_line(problems, runs, out / "problems.md"),
    }
