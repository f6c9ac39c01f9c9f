"""Embedding map: a 2-D UMAP (umap-learn) of the test embeddings coloured by class, the untrained network
beside the trained one, so that collapse (classes merged into one blob, or spread into a thin curve) is
visible at a glance. At most ``max_points`` queries are drawn (a seeded sample, the same in both panels):
UMAP's cost grows with n, and a few thousand points already show the structure. ``method="pca"`` projects
on the first two principal components instead (no extra package, instant)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError
from harness.inspect.style import class_colours, new_figure, save, short_caption

METHODS = ("umap", "pca")


def project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if method == "pca":
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T
    if method != "umap":
        raise ConfigError(f"map method {method!r} is unknown; use one of {', '.join(METHODS)}")
    threads = torch.get_num_threads()  # numba (under UMAP) resets OpenMP's thread count, which torch shares:
    try:  # restored, so that later runs in this process compute as before
        try:
            # lazy: optional dependency (the pictures extra) and heavy (umap, numba)
            import umap
        except ImportError:
            raise ConfigError(
                "the UMAP embedding map needs umap-learn: pip install umap-learn "
                "(or draw a PCA map: python -m harness.inspect RUN_DIR --map pca)"
            ) from None
        n_neighbors = int(min(15, len(x) - 1))
        return umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(x)
    finally:
        torch.set_num_threads(threads)


def sample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def embedding_map(inspection, path: Path, method: str = "umap", max_points: int = 3000, seed: int = 0) -> Path:
    labels_all = inspection.query_labels
    keep = sample(len(labels_all), max_points, seed)
    labels = labels_all[keep]
    colours = class_colours(labels, seed=seed)
    n_classes = len(np.unique(labels))
    coloured = np.isin(labels, list(colours))
    record = inspection.record
    panels = []
    if inspection.untrained is not None:
        score = record.get("init/test/map@r")
        panels.append(("untrained network (epoch 0)", inspection.untrained.query[keep], score))
    score = record.get("test/map@r")
    panels.append(
        (f"trained (selected epoch {record.get('selected_epoch', '?')})", inspection.trained.query[keep], score)
    )

    fig = new_figure(3.3 * len(panels) + 1.3, 3.5)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    size = float(np.clip(3000 / len(keep), 2, 12))
    for ax, (title, x, score) in zip(axes, panels):
        xy = project(x, method, seed)
        if not coloured.all():
            ax.scatter(xy[~coloured, 0], xy[~coloured, 1], color="0.82", s=size, linewidths=0)
        ax.scatter(
            xy[coloured, 0],
            xy[coloured, 1],
            c=[colours[int(c)] for c in labels[coloured]],
            s=size if coloured.all() else 3 * size,
            linewidths=0,
            alpha=0.85,
        )
        ax.set_title(title + (f"\ntest MAP@R {score:.3f}" if score is not None else ""))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    handles = [
        axes[-1].scatter([], [], color=colours[c], s=25, label=short_caption(inspection.class_name(c))) for c in colours
    ]
    if len(colours) < n_classes:
        handles.append(axes[-1].scatter([], [], color="0.82", s=25, label=f"{n_classes - len(colours)} others"))
    fig.legend(handles=handles, loc="outside right center", title="class", frameon=False, fontsize=7)
    name = "UMAP" if method == "umap" else "PCA"
    fig.suptitle(
        f"{name} of {len(keep)} test embeddings ({n_classes} classes never seen in training"
        f"{f'; {len(colours)} in colour' if len(colours) < n_classes else ''})"
    )
    return save(fig, path)
