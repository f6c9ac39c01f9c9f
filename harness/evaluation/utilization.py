"""Utilization of the embedding space (Venkataramanan et al., "It Takes Two to Tango: Mixup for Deep
Metric Learning", ICLR 2022, section 5):

    u = 1/|Q| sum_{q in Q} min_{x in X} ||f(q) - f(x)||

the mean Euclidean distance from each test embedding f(q) to its nearest training embedding f(x),
found by one exact faiss L2 search. Lower = the test examples fall closer to the region the training
examples occupy; the paper reports that mixup lowers it (mixtures explore the space between classes).
"""

from __future__ import annotations

import numpy as np

from harness.evaluation.retrieval import _as_f32, build_index


def utilization(test_embeddings, train_embeddings) -> float:
    test, train = _as_f32(test_embeddings), _as_f32(train_embeddings)
    if len(test) == 0 or len(train) == 0:
        raise ValueError("utilization needs at least one test and one training embedding")
    squared, _ = build_index(train, metric="l2").search(test, 1)
    return float(np.sqrt(np.maximum(squared[:, 0], 0.0)).mean())
