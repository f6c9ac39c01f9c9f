"""Evaluation: retrieval metrics on faiss, clustering (NMI), collapse diagnostics."""

from __future__ import annotations

import numpy as np

from harness.evaluation.clustering import nmi
from harness.evaluation.retrieval import PerQuery, retrieval_metrics, retrieval_scores, search_neighbours


def evaluate_embeddings(*args, **kwargs) -> dict:
    """Every metric of the harness for one set of embeddings (queries searched among themselves, or in a gallery);
    the arguments of :func:`score_embeddings`."""
    return score_embeddings(*args, **kwargs)[0]


def score_embeddings(
    query,
    query_labels,
    gallery=None,
    gallery_labels=None,
    k_list=(1, 2, 4, 8),
    metric: str = "ip",
    with_nmi: bool = True,
    seed: int = 0,
) -> tuple[dict, PerQuery]:
    """:func:`evaluate_embeddings` and the per-query AP@R and hit@1 its MAP@R and Recall@1 average."""
    out, per_query = retrieval_scores(query, query_labels, gallery, gallery_labels, k_list=tuple(k_list), metric=metric)
    if with_nmi:
        out["nmi"] = nmi(query, np.asarray(query_labels), seed=seed)
    return out, per_query


__all__ = [
    "PerQuery",
    "evaluate_embeddings",
    "score_embeddings",
    "retrieval_scores",
    "retrieval_metrics",
    "search_neighbours",
    "nmi",
]
