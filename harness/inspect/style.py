"""One look for every picture of a run: readable at the size of a paper figure (a column is about 3.3 in,
a page about 7 in wide), Matplotlib's object API on the Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

FONT = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.titlesize": 11,
}
SAME, OTHER, QUERY = "#1a9850", "#d73027", "#4a4a4a"  # green / red borders; the query's own frame
DPI = 110


def new_figure(width: float, height: float) -> Figure:
    matplotlib.rcParams.update(FONT)
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def class_colours(labels, seed: int = 0, most: int = 20) -> dict:
    """A colour per class while ``most`` colours can be told apart (tab10 / tab20); with more classes, ten
    classes drawn at random (seeded) get tab10 colours and the others are left out (drawn in grey)."""
    classes = np.unique(labels)
    if len(classes) <= most:
        cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
        return {int(c): cmap(i) for i, c in enumerate(classes)}
    chosen = np.sort(np.random.default_rng(seed).choice(classes, size=10, replace=False))
    return {int(c): colormaps["tab10"](i) for i, c in enumerate(chosen)}


def short_caption(name: str, width: int = 14) -> str:
    """A class name in at most two short lines under a thumbnail ("Sanskrit/character08" -> two lines)."""

    def cut(text):
        text = text.replace("_", " ").strip()
        return text if len(text) <= width else text[: width - 1] + "…"

    parts = [p for p in str(name).split("/") if p]
    if len(parts) > 1:
        return f"{cut(parts[0])}\n{cut(parts[-1])}"
    lines = textwrap.wrap(str(name).replace("_", " "), width=width, max_lines=2, placeholder="…")
    return "\n".join(lines) if lines else str(name)
