"""Clustering quality: NMI of seeded faiss k-means (k = number of evaluated classes) against the labels."""

from __future__ import annotations

import faiss
import numpy as np


def kmeans_assign(x, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, gpu=faiss.get_num_gpus() > 0
                      if hasattr(faiss, "StandardGpuResources") else False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return assign[:, 0]


def normalized_mutual_info(labels_true, labels_pred) -> float:
    """NMI with arithmetic-mean normalisation (scikit-learn's default), from the contingency table."""
    _, a = np.unique(labels_true, return_inverse=True)
    _, b = np.unique(labels_pred, return_inverse=True)
    n = len(a)
    na, nb = a.max() + 1, b.max() + 1
    if na == nb == 1 or na == nb == n:
        return 1.0
    cont = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).astype(np.float64)
    pij = cont / n
    pi, pj = pij.sum(axis=1), pij.sum(axis=0)
    nz = pij > 0
    mi = float((pij[nz] * (np.log(pij[nz]) - np.log(np.outer(pi, pj)[nz]))).sum())
    ha = -float((pi[pi > 0] * np.log(pi[pi > 0])).sum())
    hb = -float((pj[pj > 0] * np.log(pj[pj > 0])).sum())
    denom = (ha + hb) / 2
    return float(max(mi, 0.0) / denom) if denom > 0 else 1.0


def nmi(x, labels, seed: int = 0, niter: int = 20) -> float:
    k = len(np.unique(labels))
    return normalized_mutual_info(labels, kmeans_assign(x, k, seed=seed, niter=niter))
