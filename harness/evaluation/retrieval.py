"""Retrieval metrics on one exact faiss search.

One k-nearest-neighbour search serves every neighbour-based metric: k is the largest of the Recall@K
list and of R (the number of same-class items a query can retrieve, which MAP@R and R-Precision need).
Definitions follow Musgrave et al., "A Metric Learning Reality Check" (ECCV 2020), as implemented by
pytorch-metric-learning's ``AccuracyCalculator``:

* Recall@K: fraction of queries with at least one same-class item among their K nearest neighbours. A K beyond
  the items a query retrieves among (:func:`unmeasurable_k`) is left out, never reported as a trivial 1.0.
* R-Precision: for a query with R same-class items, the fraction of its R nearest that are same-class.
* MAP@R: ``1/R * sum_{i<=R} P(i) * rel(i)``, mean average precision truncated at R.

Without a gallery, every query is searched among all the other queries (the query itself is removed
by index, so exact duplicates are handled); with a gallery, queries are searched in the gallery.
Queries with no same-class item to retrieve (R = 0) are excluded from every metric, as in PML.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass

import numpy as np
import torch

from harness.config import EVAL_METRICS
from harness.evaluation.faiss_build import GPU_INSTALL, import_faiss

faiss = import_faiss()

METRICS = EVAL_METRICS


def _as_f32(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def build_index(reference: np.ndarray, metric: str = "ip"):
    if metric not in METRICS:
        raise ValueError(f"eval.metric must be one of {METRICS}, not {metric!r}")
    d = reference.shape[1]
    index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    index = maybe_to_gpu(index)
    index.add(reference)
    return index


_CPU_ONLY = [False]  # set by cpu_only(): the benchmarks compare the two builds' searches


@contextlib.contextmanager
def cpu_only():
    """Searches inside run on the CPU even where faiss-gpu and a GPU are present (make gpu-check's comparison)."""
    _CPU_ONLY[0] = True
    try:
        yield
    finally:
        _CPU_ONLY[0] = False


def maybe_to_gpu(index):
    """Move a flat index to the GPU when faiss-gpu and a GPU are present; else keep it on CPU."""
    if not _CPU_ONLY[0] and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(gpu_resources(), 0, index)
    note_cpu_fallback()
    return index


@functools.cache
def gpu_resources():
    """One ``faiss.StandardGpuResources`` per process: its scratch memory, cuBLAS handle and streams are set up
    once, not for every search (each evaluation searches once per split)."""
    return faiss.StandardGpuResources()


@functools.cache
def note_cpu_fallback() -> None:
    """Say once per process when a GPU is present but faiss searches on the CPU."""
    if torch.cuda.is_available():
        logging.getLogger(__name__).info(
            "faiss has no GPU support here: exact searches run on the CPU (for faiss-gpu: %s)", GPU_INSTALL
        )


def search_neighbours(query, k: int, gallery=None, metric: str = "ip") -> np.ndarray:
    """Indices (n_query x k) of the k nearest gallery items, the query itself excluded when gallery is None."""
    query = _as_f32(query)
    if gallery is None:
        k = min(k, len(query) - 1)
        index = build_index(query, metric)
        _, idx = index.search(query, k + 1)
        is_self = idx == np.arange(len(query))[:, None]
        # rows where the query was not returned (ties with duplicates) drop their last neighbour instead
        no_self = ~is_self.any(axis=1)
        is_self[no_self, -1] = True
        return idx[~is_self].reshape(len(query), k)
    gallery = _as_f32(gallery)
    k = min(k, len(gallery))
    index = build_index(gallery, metric)
    _, idx = index.search(query, k)
    return idx


def unmeasurable_k(k_list, n_query: int, n_gallery: int | None = None) -> list:
    """The Ks of ``k_list`` beyond the items a query retrieves among (the gallery, or the other queries)."""
    reachable = n_gallery if n_gallery is not None else n_query - 1
    return [int(k) for k in k_list if int(k) > reachable]


def all_tied(query, gallery=None) -> bool:
    """Whether every embedding is the same vector (all zero, say): then every distance ties, and the order of the
    items, not the model, decides each ranking."""
    x = np.asarray(query) if gallery is None else np.concatenate([np.asarray(query), np.asarray(gallery)])
    return len(x) > 1 and bool((x == x[:1]).all())


def same_class_counts(query_labels, ref_labels, leave_one_out: bool) -> np.ndarray:
    """R of each query: how many reference items share its class (itself excluded when leave-one-out)."""
    query_labels, ref_labels = np.asarray(query_labels), np.asarray(ref_labels)
    classes, ref_counts = np.unique(ref_labels, return_counts=True)
    pos = np.clip(np.searchsorted(classes, query_labels), 0, len(classes) - 1)
    r = np.where(classes[pos] == query_labels, ref_counts[pos], 0)
    return r - 1 if leave_one_out else r


def ap_at_r(match: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per-query average precision at R from the neighbour match matrix (n x k, k >= max R) and each query's R."""
    k = match.shape[1]
    rel = match & (np.arange(k)[None, :] < r[:, None])
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, k + 1)[None, :]
    return (precision_at_i * rel).sum(axis=1) / np.maximum(r, 1)


@dataclass(frozen=True)
class PerQuery:
    """Each scored query's AP@R and hit@1 (Recall@1 of that query), with its class label: the means are the
    split's MAP@R and Recall@1; the labels let a bootstrap resample whole classes."""

    label: np.ndarray  # int64, one per query with R > 0, in the split's order
    ap_at_r: np.ndarray  # float64
    hit_at_1: np.ndarray  # bool


def retrieval_metrics(query, query_labels, gallery=None, gallery_labels=None, k_list=(1, 2, 4, 8), metric="ip") -> dict:
    return retrieval_scores(query, query_labels, gallery, gallery_labels, k_list, metric)[0]


def retrieval_scores(
    query, query_labels, gallery=None, gallery_labels=None, k_list=(1, 2, 4, 8), metric="ip"
) -> tuple[dict, PerQuery]:
    """The metrics of :func:`retrieval_metrics` and the per-query values they average, from one search."""
    query_labels = np.asarray(query_labels)
    ref_labels = query_labels if gallery is None else np.asarray(gallery_labels)
    r = same_class_counts(query_labels, ref_labels, leave_one_out=gallery is None)
    valid = r > 0
    k = int(max(max(k_list, default=1), r.max(initial=1)))
    idx = search_neighbours(query, k, gallery, metric)
    k = idx.shape[1]
    match = ref_labels[idx] == query_labels[:, None]
    match, r = match[valid], r[valid]
    out = {"num_queries": int(valid.sum())}
    if not valid.any():
        raise ValueError("no query has a same-class item to retrieve; every class needs at least 2 items")
    left_out = unmeasurable_k(k_list, len(query_labels), None if gallery is None else len(ref_labels))
    for kk in k_list:
        if kk not in left_out:
            out[f"recall@{kk}"] = float(match[:, :kk].any(axis=1).mean())
    rel = match & (np.arange(k)[None, :] < r[:, None])
    out["r_precision"] = float((rel.sum(axis=1) / r).mean())
    ap = ap_at_r(match, r)
    out["map@r"] = float(ap.mean())
    per_query = PerQuery(query_labels[valid].astype(np.int64), ap.astype(np.float64), match[:, 0].copy())
    return out, per_query
