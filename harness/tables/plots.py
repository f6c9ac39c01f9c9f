"""Plots beside the tables (PNG): a metric against a swept numeric knob with seed bands, and the training
curves of each group. Matplotlib's object API on the Agg canvas: no display and no pyplot global state."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

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


COLUMNS = 3  # panels per row: a figure wraps instead of growing one long row


def panel_grid(n: int, width: float = 4.0, height: float = 3.2, sharey: bool = False):
    """A figure of ``n`` panels wrapping at ``COLUMNS`` per row; the unused cells are removed."""
    cols = min(n, COLUMNS)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=sharey).ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, list(axes[:n])


def plot_metric_vs_knob(runs: pd.DataFrame, knob: str, others: list, metrics: list, path: Path) -> Path:
    """One panel per metric (wrapping): the mean over seeds against ``knob`` with a band of ± one std, a line per
    combination of the ``others`` columns (base loss, regularizer, dataset, ...). A point that is one seed (no
    mean, no spread) is drawn hollow. Groups without the knob (e.g. regularizer=none) are dashed horizontal
    lines: the baseline the knob moves away from."""
    fig, axes = panel_grid(len(metrics))
    lines = list(runs.groupby(others, dropna=False, sort=True)) if others else [((), runs)]
    values = runs[knob].dropna()
    log_x = len(values) and values.min() > 0 and values.max() / values.min() >= 20
    one_seed = False
    for ax, metric in zip(axes, metrics):
        for i, (key, part) in enumerate(lines):
            name = group_label(others, key) or None
            colour = f"C{i % 10}"
            if part[knob].isna().all():
                ax.axhline(part[metric].mean(), linestyle="--", color=colour, linewidth=1, label=name)
                continue
            stats = part.groupby(knob)[metric].agg(["mean", "std", "count"]).sort_index()
            x = stats.index.to_numpy(dtype=float)
            ax.plot(x, stats["mean"], color=colour, label=name)
            single = (stats["count"] == 1).to_numpy()
            one_seed |= bool(single.any())
            ax.scatter(x[~single], stats["mean"][~single], color=colour, zorder=3)
            ax.scatter(x[single], stats["mean"][single], facecolors="white", edgecolors=colour, zorder=3)
            std = stats["std"].fillna(0)
            ax.fill_between(x, stats["mean"] - std, stats["mean"] + std, color=colour, alpha=0.2, linewidth=0)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(knob.removeprefix("config/"))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Patch(color="0.5", alpha=0.25))
    labels.append("band: ± 1 std over seeds")
    if one_seed:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="0.3"))
        labels.append("hollow: one seed (no mean)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize="small")
    fig.suptitle(f"test metrics against {knob.removeprefix('config/')} (mean over seeds)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def epoch_frame(run_paths, problems: list) -> pd.DataFrame:
    """The epoch logs of a group's runs, one row per (run, epoch) from epoch 0 (the untrained network: its
    validation metric; training terms start at epoch 1); a log that cannot be read is added to ``problems``
    and left out."""
    rows = []
    for i, run_dir in enumerate(run_paths):
        try:
            rows += [dict(at_epoch_zero(row), run=i) for row in read_epochs(Path(run_dir))]
        except Corrupt as err:
            problems.append(Problem(str(Path(run_dir) / EPOCHS), str(err), "left out of the training curves"))
    return pd.DataFrame(rows)


def at_epoch_zero(row: dict) -> dict:
    """Epoch 0's row names the untrained network's validation metrics ``init/val/*``: on a curve they are the
    ``val/*`` values at epoch 0."""
    if row.get("epoch") != 0:
        return row
    return {**row, **{k.removeprefix("init/"): v for k, v in row.items() if k.startswith("init/val/")}}


def draw_band(ax, stats, col: str, colour: str, label: str) -> None:
    mean, std = stats[(col, "mean")].dropna(), stats[(col, "std")].fillna(0)
    std = std.loc[mean.index]
    ax.plot(mean.index, mean, color=colour, label=label, marker="o" if len(mean) <= 12 else None, markersize=3)
    ax.fill_between(mean.index, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)


def plot_training_curves(groups: list, selection_metric: str, path: Path, problems: list) -> Path | None:
    """Training curves of every group in one figure that wraps, on shared axes so that a baseline and its
    regularized runs compare at a glance: per group, the loss terms (top row of its cell) and the validation
    metric from epoch 0 (the untrained network) with integer epochs; mean over seeds, band ± one std; each
    seed's selected epoch marked. ``groups``: [(title, run directories, selected epochs)]."""
    frames = [(title, epoch_frame(paths, problems), selected) for title, paths, selected in groups]
    frames = [f for f in frames if not f[1].empty]
    if not frames:
        return None
    cols = min(len(frames), COLUMNS)
    rows = -(-len(frames) // cols)
    fig = Figure(figsize=(4.0 * cols, 5.4 * rows + 0.7), layout="constrained")
    grid = fig.subplots(2 * rows, cols, squeeze=False, sharex=True)
    loss_axes, val_axes = [], []
    for i in range(rows * cols):
        top, bottom = grid[2 * (i // cols), i % cols], grid[2 * (i // cols) + 1, i % cols]
        if i >= len(frames):
            top.remove()
            bottom.remove()
            continue
        title, epochs, selected = frames[i]
        terms = [c for c in epochs.columns if c.startswith("train/") and c != "train/steps"]
        stats = epochs.groupby("epoch").agg({c: ["mean", "std"] for c in [*terms, selection_metric] if c in epochs})
        for j, col in enumerate(terms):
            draw_band(top, stats, col, f"C{j % 10}", col.removeprefix("train/"))
        if selection_metric in epochs:
            draw_band(bottom, stats, selection_metric, "C0", selection_metric)
            for epoch in selected:
                if epoch in stats.index:
                    bottom.plot(
                        [epoch],
                        [stats.loc[epoch, (selection_metric, "mean")]],
                        marker="*",
                        color="C3",
                        markersize=11,
                        linestyle="",
                    )
        seeds = epochs["run"].nunique()
        top.set_title(f"{title}\n({seeds} seed{'s' if seeds != 1 else ''})", fontsize="medium")
        top.set_ylabel("training loss terms")
        bottom.set_ylabel(selection_metric)
        bottom.set_xlabel("epoch (0 = untrained network)")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.tick_params(labelbottom=True)
        top.legend(fontsize="x-small")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        loss_axes.append(top)
        val_axes.append(bottom)
    for axes in (loss_axes, val_axes):  # one scale per row kind: the groups compare at a glance
        lows, highs = zip(*(ax.get_ylim() for ax in axes))
        for ax in axes:
            ax.set_ylim(min(lows), max(highs))
    handles = [
        Patch(color="C0", alpha=0.25),
        Line2D([], [], marker="*", color="C3", markersize=11, linestyle=""),
    ]
    labels = ["band: ± 1 std over seeds", "the epoch a seed selected (on validation)"]
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    fig.suptitle("training curves per group (mean over seeds)", fontsize="medium")
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
    groups = sorted(finished.groupby(keys, dropna=False, sort=True), key=lambda g: baseline_first(g[0]))
    if len(groups) > max_curves:
        log.warning("no training curves: %d groups (more than --max-curves %d)", len(groups), max_curves)
        return written
    selection = finished["selection/metric"].iloc[0] if "selection/metric" in finished else "val/map@r"
    chosen = [(group_label(keys, key), list(part["path"]), selected_epochs(part)) for key, part in groups]
    path = plot_training_curves(chosen, selection, out / "curves.png", problems)
    return written + ([path] if path is not None else [])


def baseline_first(key) -> tuple:
    """Groups in order, a baseline (``none``) before the regularized groups of the same base loss."""
    return tuple("" if v == "none" else str(v) for v in (key if isinstance(key, tuple) else (key,)))


def selected_epochs(part: pd.DataFrame) -> list:
    if "selected_epoch" not in part:
        return []
    return [int(e) for e in part["selected_epoch"].dropna()]
