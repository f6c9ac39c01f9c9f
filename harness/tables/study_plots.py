"""The study view's pictures: each numeric knob against the objective and test MAP@R (a scatter of the completed
trials, the best one starred), and the knobs' importance from 20 completed trials up (harness.tables.study)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from harness.search.space import param_name
from harness.tables.build import is_percent, label
from harness.tables.plots import slug
from harness.tables.study import Study


def knob_scatter(study: Study, column: str, metrics: list, path: Path) -> Path | None:
    done = study.trials[study.trials["_value"].notna()]
    if done.empty or not pd.api.types.is_numeric_dtype(done[column]):
        return None
    name = param_name(column.removeprefix("config/"))
    panels = [("_value", study.objective)] + [(m, f"test {label(m)}") for m in metrics if m in done]
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    best = done.iloc[0]
    dist = study.knobs.get(column)
    log_x = getattr(dist, "log", False) or (done[column].min() > 0 and done[column].max() / done[column].min() >= 20)
    for ax, (col, title) in zip(axes, panels):
        scale = 100.0 if is_percent(study.objective if col == "_value" else col) else 1.0
        ax.scatter(done[column], done[col] * scale, s=22, alpha=0.75, label="completed trial")
        ax.scatter(
            [best[column]],
            [best[col] * scale],
            marker="*",
            s=180,
            color="C3",
            label=f"best: trial {int(best['config/search.trial'])}",
        )
        if log_x:
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=title + (" (%)" if scale == 100.0 else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"study {study.name}: {len(done)} completed trials against {name}", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def importance_bars(study: Study, found: dict, path: Path) -> Path:
    names = list(found)[::-1]
    fig = Figure(figsize=(5.5, 0.8 + 0.45 * len(names)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [found[n] for n in names], color="C0")
    done = int(study.trials["_value"].notna().sum())
    ax.set(xlabel="importance (fANOVA, seed 0)", title=f"study {study.name}: {done} completed trials")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def save_study_plots(study: Study, metrics: list, out: Path, found: dict | None) -> list:
    written = [knob_scatter(study, c, metrics, out / f"{slug(c.removeprefix('config/'))}.png") for c in study.knobs]
    if found:
        written.append(importance_bars(study, found, out / "importance.png"))
    return [p for p in written if p is not None]
