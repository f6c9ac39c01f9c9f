"""Collapse diagnostics of a set of embeddings (recorded for every run, with or without a regularizer).

* ``coding_rate``: R(Z) = 1/2 logdet(I + d/(n eps) Z^T Z) of the L2-normalised embeddings, eps = 0.5
  (Yu et al. 2020; the quantity AntiCo maximises). Higher = the embeddings span more of the space.
* ``rho_spectrum``: KL(U || s) of the normalised singular-value spectrum s of the embeddings to the
  uniform distribution U (Roth et al., "Revisiting Training Strategies and Generalization Performance
  in Deep Metric Learning", ICML 2020, their rho). Lower = less compressed (a flatter spectrum).
* ``intra`` / ``inter`` / ``intra_inter_ratio``: mean distance of samples to their class centre,
  mean distance between class centres, and their ratio (Roth et al. 2020's pi_ratio).
* ``uniformity``: log E exp(-2 ||z_i - z_j||^2) over pairs (Wang & Isola, ICML 2020). Lower = more uniform.
"""

from __future__ import annotations

import numpy as np
import torch

DIAGNOSTIC_EPS = 0.5


def coding_rate_np(z: np.ndarray, eps: float = DIAGNOSTIC_EPS) -> float:
    from harness.regularizers.coding_rate import coding_rate

    with torch.no_grad():
        return float(coding_rate(torch.from_numpy(z).double(), eps=eps))


def rho_spectrum(z: np.ndarray, eps: float = 1e-12) -> float:
    s = np.linalg.svd(z.astype(np.float64) - 0.0, compute_uv=False)
    p = s / max(s.sum(), eps)
    u = np.full_like(p, 1.0 / len(p))
    return float(np.sum(u * (np.log(u) - np.log(p + eps))))


def class_distances(z: np.ndarray, labels: np.ndarray) -> dict:
    classes = np.unique(labels)
    centres = np.stack([z[labels == c].mean(axis=0) for c in classes])
    intra = float(np.mean([np.linalg.norm(z[labels == c] - centres[i], axis=1).mean() for i, c in enumerate(classes)]))
    if len(classes) > 1:
        d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        inter = float(d[np.triu_indices(len(classes), 1)].mean())
    else:
        inter = float("nan")
    return {"intra": intra, "inter": inter, "intra_inter_ratio": intra / inter if inter > 0 else float("nan")}


def uniformity(z: np.ndarray, t: float = 2.0, max_n: int = 4096, seed: int = 0) -> float:
    if len(z) > max_n:
        z = z[np.random.default_rng(seed).choice(len(z), max_n, replace=False)]
    zt = torch.from_numpy(z).double()
    sq = torch.pdist(zt).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - np.log(len(sq)))


def collapse_diagnostics(z: np.ndarray, labels: np.ndarray) -> dict:
    zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    out = {"coding_rate": coding_rate_np(zn), "rho_spectrum": rho_spectrum(zn), "uniformity": uniformity(zn)}
    out.update(class_distances(zn, np.asarray(labels)))
    return out
