"""Retrieval grid: rows of a test query and its top-k results, framed green (same class) or red (another
class), with class names. The worst queries by average precision at R come first, then a seeded random
sample: the failures and the typical case in one picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image, ImageOps

from harness.evaluation.retrieval import ap_at_r, same_class_counts, search_neighbours
from harness.inspect.style import OTHER, QUERY, SAME, new_figure, save, short_caption


def neighbours_and_ap(inspection, k: int, metric: str = "ip"):
    """Top-k neighbours of every query (gallery indices) and its AP@R (NaN where the class has no other item)."""
    emb = inspection.trained
    q_labels, g_labels = inspection.query_labels, inspection.gallery_labels
    r = same_class_counts(q_labels, g_labels, leave_one_out=emb.gallery is None)
    idx = search_neighbours(emb.query, int(max(k, r.max(initial=1))), emb.gallery, metric)
    match = g_labels[idx] == q_labels[:, None]
    ap = np.where(r > 0, ap_at_r(match, r), np.nan)
    return idx[:, :k], ap


def pick_queries(ap: np.ndarray, n_worst: int, n_random: int, seed: int) -> tuple[list, list]:
    valid = np.flatnonzero(~np.isnan(ap))
    worst = valid[np.argsort(ap[valid], kind="stable")[:n_worst]].tolist()
    rest = np.setdiff1d(valid, worst)
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(rest, size=min(n_random, len(rest)), replace=False).tolist())
    return worst, sample


def thumbnail(dataset, i: int, size: int = 96):
    """An image of item ``i`` for display, and its colour map: image files are read from disk (the original,
    not the normalised tensor); in-memory vectors of a square number of values (digits: 64) are drawn as
    square grey images, in-memory image tensors as they are (rescaled to [0, 1])."""
    if hasattr(dataset, "paths"):
        with Image.open(dataset.paths[i]) as img:
            return np.asarray(ImageOps.fit(img.convert("RGB"), (size, size))), None
    x = np.asarray(dataset.inputs[i], dtype=np.float32)
    if x.ndim == 1:
        side = int(round(np.sqrt(x.size)))
        x = x.reshape(side, side) if side * side == x.size else x[None, :]
    elif x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x, ("gray_r" if x.ndim == 2 else None)


def draw_cell(ax, image, cmap, colour: str, caption: str, width: float = 4.0) -> None:
    ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest" if image.shape[0] <= 32 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    h, w = image.shape[:2]
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, edgecolor=colour, linewidth=width, clip_on=False))
    ax.set_xlabel(
        caption,
        fontsize=7 if "\n" in caption else 8,
        labelpad=2,
        linespacing=1.0,
        color=colour if colour != QUERY else "black",
    )


def draw_results(fig, grid, row: int, neighbours, gallery, g_labels, q_label, names: dict) -> None:
    """A query's top-k results in columns 2.. of ``row``: framed green (its class) or red (another)."""
    for j, g in enumerate(neighbours):
        ax = fig.add_subplot(grid[row, j + 2])
        same = g_labels[g] == q_label
        draw_cell(ax, *thumbnail(gallery, g), SAME if same else OTHER, names[int(g_labels[g])])
        if row == 0:
            ax.set_title(f"#{j + 1}", fontsize=9)


def run_title(inspection) -> str:
    """dataset, loss, regularizer and seed of the run, and its test MAP@R."""
    rec = inspection.record
    parts = [
        f"{rec[k]}" if k == "dataset" else f"{k}={rec[k]}"
        for k in ("dataset", "loss", "regularizer", "seed")
        if k in rec
    ]
    if rec.get("test/map@r") is not None:
        parts.append(f"test MAP@R {rec['test/map@r']:.3f}")
    return ", ".join(parts) or inspection.run_dir.name


def retrieval_grid(
    inspection, path: Path, k: int = 8, n_worst: int = 4, n_random: int = 4, seed: int = 0, metric: str = "ip"
) -> Path:
    idx, ap = neighbours_and_ap(inspection, k, metric)
    worst, sample = pick_queries(ap, n_worst, n_random, seed)
    rows = [("worst", q) for q in worst] + [("random", q) for q in sample]
    gallery = inspection.gallery if inspection.gallery is not None else inspection.query
    q_labels, g_labels = inspection.query_labels, inspection.gallery_labels
    names = {int(c): short_caption(inspection.class_name(c)) for c in np.unique(np.r_[q_labels, g_labels])}
    two_lines = any("\n" in n for n in names.values())
    cell = 0.95
    fig = new_figure(cell * (k + 1.35), cell * (1.3 if two_lines else 1.12) * len(rows) + 0.7)
    grid = fig.add_gridspec(len(rows), k + 2, width_ratios=[1.0, 0.18] + [1.0] * k)
    for row, (kind, q) in enumerate(rows):
        ax = fig.add_subplot(grid[row, 0])
        draw_cell(ax, *thumbnail(inspection.query, q), QUERY, names[int(q_labels[q])], width=2.0)
        ax.set_ylabel(
            f"{'worst' if kind == 'worst' else 'random'}\nAP@R {ap[q]:.2f}",
            fontsize=8,
            rotation=0,
            ha="right",
            va="center",
            labelpad=4,
        )
        if row == 0:
            ax.set_title("query", fontsize=9)
        draw_results(fig, grid, row, idx[q], gallery, g_labels, q_labels[q], names)
    fig.suptitle(
        f"Top-{k} test retrievals: {run_title(inspection)}\n{len(worst)} worst queries by AP@R, "
        f"{len(sample)} at random; frame green = same class as the query, red = another class; caption: class",
        fontsize=9,
    )
    return save(fig, path)
