"""The coding rate of Maximal Coding Rate Reduction (Yu, Chan, You, Song, Ma, NeurIPS 2020).

    R(Z) = 1/2 logdet( I_d + gam1 * d / (n * eps) * Z^T Z )          Z: n x d

``eps`` is the squared distortion (epsilon^2 of the paper), as in the MCR^2 reference code. By
Sylvester's determinant identity the same value is 1/2 logdet(I_n + a Z Z^T) with a = gam1 d / (n eps);
the smaller Gram matrix is used, in float32 at least (float64 on request), through a Cholesky
factorisation: I + a G is symmetric positive definite for any Z, so the result is finite even for a
rank-deficient Z or duplicate rows (a collapsed embedding).
"""

from __future__ import annotations

import torch


def coding_rate(z: torch.Tensor, eps: float = 0.5, gam1: float = 1.0, scale: float | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """R(Z) for an n x d matrix ``z``. ``scale`` overrides gam1 * d / (n * eps) (for reference scalings)."""
    n, d = z.shape
    work = dtype or (z.dtype if z.dtype in (torch.float32, torch.float64) else torch.float32)
    z = z.to(work)
    a = scale if scale is not None else gam1 * d / (n * eps)
    gram = z @ z.T if n <= d else z.T @ z
    m = torch.eye(gram.shape[0], dtype=work, device=z.device) + a * gram
    chol = torch.linalg.cholesky(m)
    return torch.log(torch.diagonal(chol)).sum()  # 1/2 logdet = sum log diag(L)
