"""The pipeline: load, select, aggregate, build the views, render them and write the folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.errors import ConfigError, DataError
from harness.tables.aggregate import group_keys, metric_columns, summarize, with_filled_keys
from harness.tables.build import build_references, build_table
from harness.tables.compare import compare
from harness.tables.dedupe import drop_duplicates
from harness.tables.layout import atomic_write, atomic_write_text
from harness.tables.load import normalise, scan
from harness.tables.mixing import add_columns, check_allowed, mixed_notes, split_mixed
from harness.tables.paper import build_paper
from harness.tables.problems import missing_metrics, problems_markdown, summary_line
from harness.tables.protocols import RELEASED, protocol_notes, protocol_rows, protocol_scope, read_protocols
from harness.tables.render import grid_to_latex, grid_to_markdown, to_csv, to_latex, to_markdown
from harness.tables.select import is_study, resolve_column, select_runs
from harness.tables.significance import STAT_COLUMNS, build_paired_delta, build_tests, tests_frame

OPTIONAL = (
    "references.md",
    "references.tex",
    "delta.md",
    "delta.tex",
    "significance.md",
    "significance.tex",
    "significance.csv",
    "paper.md",
    "paper.tex",
    "problems.md",
)


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
    alpha=0.05,
    family="map@r",
    allow_mixed=(),
) -> dict:
    """Load, select, aggregate, render and write; returns the rendered texts and the written paths."""
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha} must lie between 0 and 1, e.g. --alpha 0.05")
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
    runs, duplicates = drop_duplicates(runs)  # before the folds are read back as models (two rows of one model)
    runs, fold_problems = read_protocols(runs)  # the protocol column; Reality Check folds read back as models
    problems += fold_problems
    mix_keys = add_columns(runs)
    allowed = check_allowed(allow_mixed, mix_keys)
    what = (
        f"{', '.join(map(str, roots))}"
        + (f" for sweep={sweep}" if sweep else "")
        + (f" where {' '.join(where)}" if where else "")
    )
    if is_study(runs):  # an Optuna study's trials: ranked as a study, not averaged as groups of seeds
        from harness.tables.study import write_study  # optuna and the search driver: only for a study (1-2 s)

        out = Path(out) if out else roots[0] / "tables" / (sweep or "all")
        result = write_study(runs, roots, out, metrics, digits, plots)
        listing = problems_markdown(runs, problems, duplicates)
        if listing:
            result["texts"]["problems.md"] = listing
            atomic_write_text(out / "problems.md", listing)
        result.update(runs=runs, problems=problems, duplicates=duplicates, mixed=[])
        result["problems_line"] = summary_line(problems, runs, out / "problems.md", duplicates)
        return result
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
    family_col = family if "/" in family else f"{split}/{family}"
    rows = protocol_rows(runs, [resolve_column(runs, r) for r in rows])
    cols = [resolve_column(runs, c) for c in cols]
    finished = records_frame[records_frame["status"] == "finished"]
    keys = [k for k in group_keys(records_frame, rows + cols) if k != "config_hash"]
    split_by, mixed = split_mixed(with_filled_keys(finished, keys), keys, mix_keys, allowed)
    keys = group_keys(records_frame, keys + split_by, last_resort="data" not in allowed)
    rows = rows + keys[len(rows) + len(cols) :]  # knobs found varying, and what split a mixed group, are row columns
    keys = rows + cols
    summary = summarize(runs, keys, metric_cols)
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
    table.notes += protocol_notes(runs) + mixed_notes(mixed)
    if family_col not in finished:
        have = sorted(c.split("/", 1)[1] for c in finished.columns if c.startswith(f"{split}/"))
        raise ConfigError(f"--family {family}: the records have no {family_col}; pick one of {have}")
    compared = metric_cols + [family_col] * (family_col not in metric_cols)
    paired = with_filled_keys(finished[finished["regularizer"] != RELEASED], keys)  # a released baseline: no arm
    comparisons = compare(paired, rows, cols, compared, family_col, alpha)
    delta = build_paired_delta(comparisons, rows, cols, family_col, alpha, expected, digits, scope)
    tests, tests_title = build_tests(comparisons, rows, cols, family_col, alpha, digits)
    references = build_references(finished, cols, metric_cols, digits, scope)
    paper = build_paper(runs, keys, split, digits)

    texts = {"table.md": to_markdown(table), "table.tex": to_latex(table)}
    if references is not None:
        texts.update(
            {"references.md": to_markdown(references), "references.tex": to_latex(references, "tab:references")}
        )
    if delta is not None:
        texts.update({"delta.md": to_markdown(delta), "delta.tex": to_latex(delta, "tab:delta")})
    if tests is not None:
        caption = f"paired tests on {family_col.split('/', 1)[1]} (the family), α = {alpha:g}, {scope}"
        caption = f"{tests_title}: {caption}" if tests_title else caption
        keys_shown = len(tests.header) - len(STAT_COLUMNS)
        texts.update(
            {
                "significance.md": grid_to_markdown(tests, caption, left=keys_shown),
                "significance.tex": grid_to_latex(tests, caption, "tab:significance", left=keys_shown),
                "significance.csv": tests_frame(comparisons).to_csv(index=False),
            }
        )
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
        # lazy: heavy (matplotlib), only with plots
        from harness.tables.plots import save_plots

        knobs = [resolve_column(runs, x) for x in xs] or [
            k for k in keys if k.startswith("config/") and pd.api.types.is_numeric_dtype(runs[k])
        ]
        written += save_plots(
            runs[runs["status"] == "finished"], keys, knobs, metric_cols, out / "plots", problems, max_curves=max_curves
        )
    listing = problems_markdown(runs, problems, duplicates, mixed)
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
        "comparisons": comparisons,
        "problems": problems,
        "duplicates": duplicates,
        "mixed": mixed,
        "problems_line": summary_line(problems, runs, out / "problems.md", duplicates, mixed),
    }
