"""Two runs side by side: ``python -m harness.inspect RUN_A RUN_B`` (or ``RUN --baseline``).

The same test split embedded by both runs' selected networks, drawn with one colour per run in every picture
(run A, usually the baseline, in blue; run B, the regularized one, in orange):

* ``compare_retrieval_grid.png``: for each query, run A's top-k above run B's: the queries where the two runs'
  AP@R differ most, then a seeded random sample (result frames: green same class, red another class);
* ``compare_embedding_map.png``: the untrained network, run A and run B (UMAP, or PCA), classes coloured alike;
* ``compare_spectrum.png``: the normalised singular values of both runs and of the untrained network.

Inside a sweep, a run that finishes after its baseline (the run that differs only in ``regularizer=none``)
draws the cheap two (grid, spectrum) into ``pictures/compare_<other run>/``; the UMAP map is left to
``python -m harness.inspect``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.inspect.embedding_map import project, sample
from harness.inspect.grid import draw_cell, draw_results, neighbours_and_ap, thumbnail
from harness.inspect.loading import load_inspection
from harness.inspect.spectrum import plot_spectra, regularizer_siblings
from harness.inspect.style import class_colours, new_figure, save, short_caption
from harness.models.reload import load_run
from harness.rundir import identity
from harness.rundir.run_dir import RunDir

RUN_COLOURS = ("#3b6fb6", "#e07b39")  # run A, run B: the same in every comparison picture
CHEAP = ("retrieval_grid", "spectrum")  # what a sweep's runs draw at the end (UMAP: python -m harness.inspect)
COMPARE = ("retrieval_grid", "embedding_map", "spectrum")


def run_label(inspection) -> str:
    """What tells the two runs apart at a glance: loss, regularizer and seed."""
    rec = inspection.record
    reg = rec.get("regularizer") or identity.group_choice(inspection.config, "regularizer")
    loss = rec.get("loss") or identity.group_choice(inspection.config, "loss")
    return f"{loss} + {reg}" if reg != "none" else f"{loss} (no regularizer)"


def same_test_split(a_config, b_config) -> bool:
    return OmegaConf.to_container(a_config.dataset, resolve=True) == OmegaConf.to_container(
        b_config.dataset, resolve=True
    )


def with_other_run(inspection, other_dir, device: str = "cpu"):
    """``other_dir``'s selected network on ``inspection``'s test split (checked to be the same data)."""
    other_dir = Path(other_dir)
    run = load_run(other_dir, device=device)
    if not same_test_split(inspection.config, run.cfg):
        raise ConfigError(
            f"{inspection.run_dir.name} and {other_dir.name} are tested on different data (their dataset "
            "configs differ); compare two runs of one dataset and split"
        )
    record = RunDir.at(other_dir).record() or {}
    return replace(inspection, run_dir=other_dir, record=record, config=run.cfg, trained=inspection.embed(run.model))


def finished_siblings(run_dir) -> list:
    """[(run directory, its regularizer)] of the finished runs beside ``run_dir`` that differ from it only in the
    regularizer (same seed)."""
    found = []
    for other in regularizer_siblings(run_dir, limit=None):
        rd = RunDir.at(other)
        if rd.is_finished():
            found.append((other, identity.group_choice(rd.config(), "regularizer")))
    return found


def find_baseline(run_dir) -> Path:
    """The finished run beside ``run_dir`` that differs from it only in ``regularizer=none`` (same seed)."""
    found = [other for other, reg in finished_siblings(run_dir) if reg == "none"]
    if not found:
        raise ConfigError(
            f"no finished baseline beside {run_dir} (a run with regularizer=none, otherwise the same config and "
            "seed); pass one: python -m harness.inspect BASELINE_RUN RUN"
        )
    return found[0]


def comparison_grid(a, b, path: Path, k: int = 8, n_differ: int = 3, n_random: int = 2, seed: int = 0, metric="ip"):
    idx_a, ap_a = neighbours_and_ap(a, k, metric)
    idx_b, ap_b = neighbours_and_ap(b, k, metric)
    valid = np.flatnonzero(~(np.isnan(ap_a) | np.isnan(ap_b)))
    differ = valid[np.argsort(-np.abs(ap_b[valid] - ap_a[valid]), kind="stable")[:n_differ]].tolist()
    rest = np.setdiff1d(valid, differ)
    sample = sorted(np.random.default_rng(seed).choice(rest, size=min(n_random, len(rest)), replace=False).tolist())
    queries = [("differ most", q) for q in differ] + [("random", q) for q in sample]
    gallery = a.gallery if a.gallery is not None else a.query
    q_labels, g_labels = a.query_labels, a.gallery_labels
    names = {int(c): short_caption(a.class_name(c)) for c in np.unique(np.r_[q_labels, g_labels])}
    runs = [(idx_a, ap_a, RUN_COLOURS[0], "A"), (idx_b, ap_b, RUN_COLOURS[1], "B")]
    n_rows = 2 * len(queries)
    fig = new_figure(0.95 * (k + 1.8), 0.95 * 1.25 * n_rows + 0.9)
    grid = fig.add_gridspec(n_rows, k + 2, width_ratios=[1.0, 0.18] + [1.0] * k)
    for i, (kind, q) in enumerate(queries):
        for j, (idx, ap, colour, letter) in enumerate(runs):
            row = 2 * i + j
            ax = fig.add_subplot(grid[row, 0])
            draw_cell(ax, *thumbnail(a.query, q), colour, names[int(q_labels[q])], width=3.0)
            ax.set_ylabel(f"{kind}\n{letter}: AP@R {ap[q]:.2f}", fontsize=8, rotation=0, ha="right", va="center")
            ax.yaxis.label.set_color(colour)
            if row == 0:
                ax.set_title("query", fontsize=9)
            draw_results(fig, grid, row, idx[q], gallery, g_labels, q_labels[q], names)
    fig.suptitle(
        f"Top-{k} test retrievals, run A above run B for each query ({a.record.get('dataset', '')}, "
        f"seed {a.record.get('seed', '?')})\nA = {run_label(a)}: test MAP@R {a.record.get('test/map@r', np.nan):.3f}"
        f"   B = {run_label(b)}: test MAP@R {b.record.get('test/map@r', np.nan):.3f}\n"
        "query frame and label: the run's colour; result frame green = same class, red = another class",
        fontsize=9,
    )
    return save(fig, path)


def comparison_spectrum(a, b, path: Path):
    curves = []
    if a.untrained is not None:
        curves.append(("untrained (epoch 0)", a.untrained.query, dict(color="0.55", linestyle="--")))
    curves += [
        (f"A: {run_label(a)}", a.trained.query, dict(color=RUN_COLOURS[0], linewidth=2.2)),
        (f"B: {run_label(b)}", b.trained.query, dict(color=RUN_COLOURS[1], linewidth=2.2)),
    ]
    fig = new_figure(5.4, 3.7)
    ax = fig.subplots()
    plot_spectra(ax, curves)
    n, d = a.trained.query.shape
    ax.set_title(f"Spectrum of the test embeddings, A against B (n = {n}, d = {d})")
    return save(fig, path)


def comparison_map(a, b, path: Path, method: str = "umap", max_points: int = 3000, seed: int = 0):
    keep = sample(len(a.query_labels), max_points, seed)
    labels = a.query_labels[keep]
    colours = class_colours(labels, seed=seed)
    coloured = np.isin(labels, list(colours))
    panels = []
    if a.untrained is not None:
        panels.append(("untrained network", a.untrained.query[keep], a.record.get("init/test/map@r"), "0.35"))
    panels.append((f"A: {run_label(a)}", a.trained.query[keep], a.record.get("test/map@r"), RUN_COLOURS[0]))
    panels.append((f"B: {run_label(b)}", b.trained.query[keep], b.record.get("test/map@r"), RUN_COLOURS[1]))
    fig = new_figure(3.2 * len(panels) + 1.2, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    size = float(np.clip(3000 / len(keep), 2, 12))
    for ax, (title, x, score, colour) in zip(axes, panels):
        xy = project(x, method, seed)
        if not coloured.all():
            ax.scatter(xy[~coloured, 0], xy[~coloured, 1], color="0.82", s=size, linewidths=0)
        big = size if coloured.all() else 3 * size  # a few classes in colour among grey others: drawn larger
        ax.scatter(xy[coloured, 0], xy[coloured, 1], c=[colours[int(c)] for c in labels[coloured]], s=big, linewidths=0)
        ax.set_title(title + (f"\ntest MAP@R {score:.3f}" if score is not None else ""), color=colour)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.5)
    handles = [axes[-1].scatter([], [], color=colours[c], s=25, label=short_caption(a.class_name(c))) for c in colours]
    fig.legend(handles=handles, loc="outside right center", title="class", frameon=False, fontsize=7)
    name = "UMAP" if method == "umap" else "PCA"
    fig.suptitle(f"{name} of {len(keep)} test embeddings: the untrained network, run A and run B")
    return save(fig, path)


def compare_runs(
    a_dir,
    b_dir,
    out=None,
    device: str = "cpu",
    only=COMPARE,
    map_method: str = "umap",
    k: int = 8,
    n_differ: int = 3,
    n_random: int = 2,
    max_points: int = 3000,
    inspection=None,
    inspection_of: str = "a",
) -> list:
    """Draw the comparison pictures of run A (``a_dir``, e.g. the baseline) and run B; return the paths.
    ``inspection``: run A's (``inspection_of="a"``) or B's, when the caller holds it (a run that has just
    finished); the other run's network then embeds the same test split."""
    a_dir, b_dir = Path(a_dir), Path(b_dir)
    out = Path(out) if out is not None else b_dir / "pictures" / f"compare_{a_dir.name}"
    if inspection is None:
        inspection = load_inspection(a_dir, device=device, untrained=any(p != "retrieval_grid" for p in only))
    if inspection_of == "a":
        a, b = inspection, with_other_run(inspection, b_dir, device)
    else:
        a, b = with_other_run(inspection, a_dir, device), inspection
    seed = int(a.config.seed)
    metric = str(a.config.eval.get("metric", "ip"))
    written = []
    if "retrieval_grid" in only:
        written.append(comparison_grid(a, b, out / "compare_retrieval_grid.png", k, n_differ, n_random, seed, metric))
    if "embedding_map" in only:
        written.append(comparison_map(a, b, out / "compare_embedding_map.png", map_method, max_points, seed))
    if "spectrum" in only:
        written.append(comparison_spectrum(a, b, out / "compare_spectrum.png"))
    return written
