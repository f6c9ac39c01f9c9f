"""Collapse diagnostics of a set of embeddings, recorded for every run (``diag/val/*``, ``diag/test/*``).

All are computed in float64 on the L2-normalised embeddings Z (n x d):

* ``coding_rate``: R(Z) = 1/2 logdet(I + d / (n eps) Z^T Z) with eps = 0.5 (the squared distortion of
  MCR^2, Yu et al. 2020; gam1 = 1, the textbook scaling), the quantity AntiCo maximises. Its range is
  [1/2 log(1 + d/(n eps)), d/2 log(1 + 1/eps)]; higher = the embeddings span more of the space.
  ``coding_rate_eps`` states the eps used.
* ``rho_spectrum``: KL(U || s) of the normalised singular-value spectrum s = sigma / sum(sigma) of Z to the
  uniform distribution U over its min(n, d) values (Roth et al., "Revisiting Training Strategies and
  Generalization Performance in Deep Metric Learning", ICML 2020, their rho; entries of s are floored at
  1e-12 so that an exactly rank-deficient Z stays finite). Higher = a more compressed spectrum.
* ``intra``: mean over classes of the mean pairwise Euclidean distance between distinct samples of a class;
  ``inter``: mean Euclidean distance between distinct class means; ``intra_inter_ratio`` = intra / inter
  (Roth et al. 2020's pi_intra, pi_inter and pi_ratio). Classes with more than 2000 samples are
  subsampled (seeded) for ``intra``.
* ``uniformity``: log mean_{i<j} exp(-2 ||z_i - z_j||^2) (Wang & Isola, ICML 2020), on at most 4096
  samples (seeded). Lower = more uniform on the sphere; -4 is the limit of a uniform sphere in high d.

The coding rate and the spectrum run on one torch thread: LAPACK's factorisations sum in another order on
another thread count, and a resumed run (or a SLURM job with other cores) must give the same bits.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.regularizers.coding_rate import coding_rate
from harness.runtime import torch_threads

DIAGNOSTIC_EPS = 0.5
MAX_CLASS_SAMPLES = 2000
MAX_UNIFORMITY_SAMPLES = 4096
CHUNK = 1024


def normalize_rows(z, dtype=np.float64) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), in ``dtype``."""
    z = np.asarray(z, dtype=dtype)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def coding_rate_of(z, eps: float = DIAGNOSTIC_EPS) -> float:
    with torch.no_grad(), torch_threads(1):  # one thread: the same bits at any thread count (see below)
        return float(coding_rate(torch.as_tensor(np.asarray(z, dtype=np.float64)), eps=eps, dtype=torch.float64))


def rho_spectrum(z, floor: float = 1e-12) -> float:
    z = torch.as_tensor(np.asarray(z, dtype=np.float64))
    with torch_threads(1):  # LAPACK's QR and SVD sum in another order on another thread count
        if len(z) > z.shape[1]:  # same singular values as the d x d factor R of Z = QR, at a fraction of the cost
            z = torch.linalg.qr(z, mode="r")[1]
        s = torch.linalg.svdvals(z).numpy()
    p = np.maximum(s / max(s.sum(), floor), floor)
    return float(np.mean(np.log(1.0 / len(p)) - np.log(p)))  # sum_i u_i log(u_i / p_i), u_i = 1/len(p)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over ordered pairs of distinct rows (i != j), in row chunks."""
    n = len(x)
    total = 0.0
    for i in range(0, n, CHUNK):
        d = np.sqrt(squared_distances(x[i : i + CHUNK], x))
        d[np.arange(len(d)), np.arange(i, i + len(d))] = 0.0
        total += d.sum()
    return total / (n * (n - 1))


def class_distances(z, labels, seed: int = 0) -> dict:
    z, labels = np.asarray(z, dtype=np.float64), np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    intra, centres = [], []
    for members in np.split(order, starts[1:]):
        centres.append(z[members].mean(axis=0))
        if len(members) > MAX_CLASS_SAMPLES:
            members = rng.choice(members, MAX_CLASS_SAMPLES, replace=False)
        if len(members) > 1:
            intra.append(mean_pairwise_distance(z[members]))
    intra_mean = float(np.mean(intra)) if intra else float("nan")
    inter = mean_pairwise_distance(np.stack(centres)) if len(classes) > 1 else float("nan")
    ratio = intra_mean / inter if inter > 0 else float("nan")
    return {"intra": intra_mean, "inter": float(inter), "intra_inter_ratio": float(ratio)}


def uniformity(z, t: float = 2.0, seed: int = 0) -> float:
    z = np.asarray(z, dtype=np.float64)
    if len(z) > MAX_UNIFORMITY_SAMPLES:
        z = z[np.random.default_rng(seed).choice(len(z), MAX_UNIFORMITY_SAMPLES, replace=False)]
    n = len(z)
    if n < 2:
        return float("nan")
    parts = []  # log-sum-exp of -t d_ij^2 over i < j, one chunk of rows at a time
    for i in range(0, n, CHUNK):
        sq = squared_distances(z[i : i + CHUNK], z)
        v = -t * sq[np.arange(n)[None, :] > np.arange(i, i + len(sq))[:, None]]
        if v.size:
            parts.append(logsumexp(v))
    return float(logsumexp(np.array(parts)) - np.log(n * (n - 1) / 2))


def logsumexp(v: np.ndarray) -> float:
    m = v.max()
    return float(m + np.log(np.exp(v - m).sum()))


def collapse_diagnostics(z: np.ndarray, labels: np.ndarray) -> dict:
    """Every diagnostic above for embeddings ``z`` (n x d) with class ``labels`` (n,)."""
    zn = normalize_rows(z)
    out = {
        "coding_rate": coding_rate_of(zn),
        "coding_rate_eps": DIAGNOSTIC_EPS,
        "rho_spectrum": rho_spectrum(zn),
        "uniformity": uniformity(zn),
    }
    out.update(class_distances(zn, labels))
    return out
