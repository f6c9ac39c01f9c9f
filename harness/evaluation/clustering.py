"""Clustering quality: NMI of seeded faiss k-means (k = number of evaluated classes) against the labels."""

from __future__ import annotations

import faiss
import numpy as np


def kmeans_assign(x, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    # min_points_per_centroid=1: faiss only compares it with n / k to print "please provide at least N training
    # points" to stderr (every evaluation of a few-shot set such as Omniglot); the clustering is bit-identical
    # (tests/test_metrics.py). max_points_per_centroid, which does subsample, keeps faiss's default.
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        gpu=faiss.get_num_gpus() > 0 if hasattr(faiss, "StandardGpuResources") else False,
    )
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign[:, 0]


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """NMI with arithmetic-mean normalisation (scikit-learn's default), from the sparse contingency table
    (only the non-empty cells: at SOP scale the dense table would have 11,316 x 11,316 cells)."""
    _, a = np.unique(labels_true, return_inverse=True)
    _, b = np.unique(labels_pred, return_inverse=True)
    n = len(a)
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    if na == nb == 1 or na == nb == n:
        return 1.0
    cells, count = np.unique(a.astype(np.int64) * nb + b, return_counts=True)
    ca, cb = np.bincount(a, minlength=na) / n, np.bincount(b, minlength=nb) / n  # marginals (all non-zero)
    pij = count / n
    mi = float((pij * (np.log(pij) - np.log(ca[cells // nb] * cb[cells % nb]))).sum())
    ha = -float((ca * np.log(ca)).sum())
    hb = -float((cb * np.log(cb)).sum())
    denom = (ha + hb) / 2
    return float(max(mi, 0.0) / denom) if denom > 0 else 1.0


def nmi(x, labels, seed: int = 0, niter: int = 20) -> float:
    k = len(np.unique(labels))
    return normalized_mutual_info(labels, kmeans_assign(x, k, seed=seed, niter=niter))
