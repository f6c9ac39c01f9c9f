"""Evaluation: retrieval metrics on faiss, clustering (NMI), collapse diagnostics."""

from __future__ import annotations

import numpy as np

from harness.evaluation.clustering import nmi
from harness.evaluation.retrieval import retrieval_metrics, search_neighbours


def evaluate_embeddings(
    query,
    query_labels,
    gallery=None,
    gallery_labels=None,
    k_list=(1, 2, 4, 8),
    metric: str = "ip",
    with_nmi: bool = True,
    seed: int = 0,
) -> dict:
    """Every metric of the harness for one set of embeddings (queries searched among themselves, or in a gallery)."""
    out = retrieval_metrics(query, query_labels, gallery, gallery_labels, k_list=tuple(k_list), metric=metric)
    if with_nmi:
        out["nmi"] = nmi(query, np.asarray(query_labels), seed=seed)
    return out


__all__ = ["evaluate_embeddings", "retrieval_metrics", "search_neighbours", "nmi"]
