"""Plots beside the tables (PNG): a metric against a swept numeric knob with seed bands, and the training
curves of each group. Matplotlib's object API on the Agg canvas: no display and no pyplot global state."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from harness.rundir.records import Corrupt, read_epochs
from harness.tables.layout import EPOCHS
from harness.tables.problems import Problem

log = logging.getLogger(__name__)


def slug(text: str) -> str:
    return re.sub(r"[^\w.@=+-]+", "_", text).strip("_")[:120]


def group_label(keys: list, values) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(
        f"{str(k).removeprefix('config/')}={v}" if str(k).startswith("config/") else str(v)
        for k, v in zip(keys, values)
    )


def plot_metric_vs_knob(runs: pd.DataFrame, knob: str, others: list, metrics: list, path: Path) -> Path:
    """One panel per metric: the mean over seeds against ``knob``, a band of ± one std, a line per
    combination of the ``others`` columns (base loss, regularizer, dataset, ...). Groups without the knob
    (e.g. regularizer=none) are drawn as dashed horizontal lines: the baseline the knob moves away from."""
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    lines = list(runs.groupby(others, dropna=False, sort=True)) if others else [((), runs)]
    values = runs[knob].dropna()
    log_x = len(values) and values.min() > 0 and values.max() / values.min() >= 20
    for ax, metric in zip(axes, metrics):
        for key, part in lines:
            name = group_label(others, key) or None
            if part[knob].isna().all():
                ax.axhline(part[metric].mean(), linestyle="--", color="gray", linewidth=1, label=name)
                continue
            stats = part.groupby(knob)[metric].agg(["mean", "std"]).sort_index()
            x = stats.index.to_numpy(dtype=float)
            ax.plot(x, stats["mean"], marker="o", label=name)
            ax.fill_between(
                x, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0), alpha=0.2
            )
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(knob.removeprefix("config/"))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if others:
        axes[0].legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def epoch_frame(run_paths, problems: list) -> pd.DataFrame:
    """The epoch logs of a group's runs, one row per (run, epoch) with a training step (epoch >= 1); a log
    that cannot be read is added to ``problems`` and left out."""
    rows = []
    for i, run_dir in enumerate(run_paths):
        try:
            rows += [dict(row, run=i) for row in read_epochs(Path(run_dir)) if row.get("epoch", 0) >= 1]
        except Corrupt as err:
            problems.append(Problem(str(Path(run_dir) / EPOCHS), str(err), "left out of the training curves"))
    return pd.DataFrame(rows)


def plot_training_curves(run_paths, title: str, selection_metric: str, path: Path, problems: list) -> Path | None:
    """Loss terms (left) and the validation metric (right) per epoch: mean over seeds, band ± one std."""
    epochs = epoch_frame(run_paths, problems)
    if epochs.empty:
        return None
    terms = [c for c in epochs.columns if c.startswith("train/") and c != "train/steps"]
    panels = [("training loss terms", terms), ("validation", [selection_metric] if selection_metric in epochs else [])]
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    for ax, (name, columns) in zip(fig.subplots(1, 2), panels):
        stats = epochs.groupby("epoch")[columns].agg(["mean", "std"]) if columns else None
        for col in columns:
            mean, std = stats[(col, "mean")], stats[(col, "std")].fillna(0)
            ax.plot(stats.index, mean, label=col)
            ax.fill_between(stats.index, mean - std, mean + std, alpha=0.2)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if columns:
            ax.legend(fontsize="small")
    fig.suptitle(f"{title} ({epochs['run'].nunique()} seeds)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def save_plots(
    finished: pd.DataFrame,
    keys: list,
    knobs: list,
    metrics: list,
    out: Path,
    problems: list,
    max_curves: int = 24,
    max_lines: int = 24,
) -> list:
    """Metric-vs-knob plots for each numeric knob (up to ``max_lines`` lines each), and training curves for up
    to ``max_curves`` groups: beyond that a figure helps nobody, and the log says how to narrow the runs."""
    written = []
    for knob in knobs:
        others = [k for k in keys if k != knob and finished[k].nunique(dropna=False) > 1]
        lines = len(finished.groupby(others, dropna=False)) if others else 1
        if lines > max_lines:
            log.warning(
                "no plot against %s: %d lines (more than %d); select fewer runs with --where", knob, lines, max_lines
            )
            continue
        written.append(
            plot_metric_vs_knob(finished, knob, others, metrics, out / f"{slug(knob.removeprefix('config/'))}.png")
        )
    groups = list(finished.groupby(keys, dropna=False, sort=True))
    if len(groups) > max_curves:
        log.warning("no training curves: %d groups (more than --max-curves %d)", len(groups), max_curves)
        return written
    for key, part in groups:
        title = group_label(keys, key)
        selection = part["selection/metric"].iloc[0] if "selection/metric" in part else "val/map@r"
        path = plot_training_curves(part["path"], title, selection, out / "curves" / f"{slug(title)}.png", problems)
        if path is not None:
            written.append(path)
    return written
