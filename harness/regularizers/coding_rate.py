"""The coding rate of Maximal Coding Rate Reduction (Yu, Chan, You, Song, Ma, NeurIPS 2020).

    R(Z) = 1/2 logdet( I_d + a * Z^T Z ),   a = gam1 * d / (n * eps)          Z: n x d, rows L2-normalised

``eps`` is the squared distortion (epsilon^2 of the MCR^2 paper), as in the MCR^2 reference code and the
AntiCo authors' code. ``scale="reference"`` uses a = gam1 * n / (d * eps) instead: the scaling the AntiCo
authors' code applies to the proxy Gram matrix (Jiang et al., TMM 2024), kept for reproducing their numbers.

By Sylvester's determinant identity the same value is 1/2 logdet(I_n + a Z Z^T), so the smaller Gram
matrix is used (n x n for a batch of 90 in 512-d). It is computed in float32 at least, with autocast off
(float64 on request), through a Cholesky factorisation: I + a G has every eigenvalue >= 1 for any Z, so
R stays finite and differentiable when Z is rank-deficient or has duplicate rows (a collapsed embedding,
exactly the input AntiCo exists for). Should float32 round-off still break the factorisation (a huge
gam1 * d / eps), it is redone in float64. Non-finite input gives a NaN, which the training loop reports.
"""

from __future__ import annotations

import torch

SCALES = ("textbook", "reference")


def gram_scale(n: int, d: int, eps: float, gam1: float, scale: str = "textbook") -> float:
    """The factor a of R(Z) = 1/2 logdet(I + a Z^T Z) for n vectors in d dimensions."""
    if scale == "textbook":
        return gam1 * d / (n * eps)
    if scale == "reference":
        return gam1 * n / (d * eps)
    raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")


def coding_rate(
    z: torch.Tensor, eps: float = 0.5, gam1: float = 1.0, scale: str = "textbook", dtype: torch.dtype | None = None
) -> torch.Tensor:
    """R(Z) of the rows of ``z`` (n x d, differentiable), as a 0-d tensor of dtype float32 or ``dtype``."""
    n, d = z.shape
    work = dtype or (torch.float64 if z.dtype == torch.float64 else torch.float32)
    a = gram_scale(n, d, eps, gam1, scale)
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.to(work)
        gram = z @ z.T if n <= d else z.T @ z
        m = torch.eye(gram.shape[0], dtype=work, device=z.device) + a * gram
        chol, info = torch.linalg.cholesky_ex(m)
        if work != torch.float64 and bool(info.any()) and bool(torch.isfinite(m).all()):
            chol = torch.linalg.cholesky(m.double()).to(work)
        return torch.log(torch.diagonal(chol)).sum()  # 1/2 logdet(M) = sum log diag(L), M = L L^T
