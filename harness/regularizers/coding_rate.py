"""The coding rate of Maximal Coding Rate Reduction (Yu, Chan, You, Song, Ma, NeurIPS 2020).

    R(Z) = 1/2 logdet( I_d + a * Z^T Z ),   a = gam1 * d / (n * eps)          Z: n x d, rows L2-normalised

``eps`` is the squared distortion (epsilon^2 of the MCR^2 paper), as in the MCR^2 reference code and the
AntiCo authors' code. ``scale="reference"`` uses a = gam1 * n / (d * eps) instead: the scaling the AntiCo
authors' code applies to the proxy Gram matrix (Jiang et al., TMM 2024), kept for reproducing their numbers.

By Sylvester's determinant identity the same value is 1/2 logdet(I_n + a Z Z^T), so the smaller Gram
matrix is used (n x n for a batch of 90 in 512-d). It is computed in float32 at least, with autocast off
and full float32 matrix products (no TF32, whatever ``trainer.float32_matmul_precision`` says; float64 on
request), through a Cholesky factorisation: I + a G has every eigenvalue >= 1 for any Z, so R stays finite
and differentiable when Z is rank-deficient or has duplicate rows (a collapsed embedding, exactly the input
AntiCo exists for). Non-finite input gives a NaN, which the training loop reports.

No host read (nothing stalls a GPU's queue): whether float32 round-off could break the factorisation is
decided from the shapes and ``a`` alone, by Demmel's sufficient condition (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., Thm 10.7): Cholesky of M in precision u succeeds when the smallest eigenvalue
of H = D^-1/2 M D^-1/2 (D = diag M) exceeds m g/(1 - m g), g = (m+1)u/(1-(m+1)u), m the order. Here
lambda_min(M) >= 1 and diag M <= 1 + a * max_j G_jj, so lambda_min(H) >= 1 / (1 + a * max_j G_jj), with
G_jj = 1 (n x n form) or <= n (d x d form) for unit rows. Where that holds (every setting the presets use),
one float32 factorisation; where it may not (a huge gam1 * d / eps), the float64 factorisation is computed
beside it and taken where float32 failed, on the device (``torch.where``), so the value is the same as
reading the failure on the host and redoing it.

``mask`` (n,) keeps only some rows without changing any shape: R of the kept rows (n_kept in ``a``), the
others' Gram rows zeroed (an identity block, log 1 = 0). AntiCo's batch-proxy variant codes the proxies of
the classes in the batch this way, with no data-dependent shape.
"""

from __future__ import annotations

import contextlib

import torch

SCALES = ("textbook", "reference")
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}


def gram_scale(n, d: int, eps: float, gam1: float, scale: str = "textbook"):
    """The factor a of R(Z) = 1/2 logdet(I + a Z^T Z) for n vectors in d dimensions (n: a number or a tensor)."""
    if scale == "textbook":
        return gam1 * d / (n * eps)
    if scale == "reference":
        return gam1 * n / (d * eps)
    raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")


def cholesky_cannot_fail(order: int, diag_max: float, dtype: torch.dtype) -> bool:
    """Demmel's sufficient condition for Cholesky of M = I + aG (lambda_min(M) >= 1, diag M <= diag_max) to
    succeed in ``dtype`` (Higham 2002, Thm 10.7), with a factor 2 of margin."""
    u = UNIT_ROUNDOFF.get(dtype, 2.0**-24)
    g = (order + 1) * u / (1 - (order + 1) * u)
    bound = order * g / (1 - order * g) if order * g < 1 else float("inf")
    return 1.0 / diag_max > 2 * bound


@contextlib.contextmanager
def full_float32_matmul():
    """Matrix products in full float32 inside (no TF32 / bf16 passes), the global setting restored after."""
    before = torch.get_float32_matmul_precision()
    if before == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def coding_rate(
    z: torch.Tensor,
    eps: float = 0.5,
    gam1: float = 1.0,
    scale: str = "textbook",
    dtype: torch.dtype | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """R(Z) of the rows of ``z`` (n x d, differentiable; only the rows of ``mask`` when given), as a 0-d tensor
    of dtype float32 or ``dtype``."""
    n, d = z.shape
    work = dtype or (torch.float64 if z.dtype == torch.float64 else torch.float32)
    if mask is None:
        a = gram_scale(n, d, eps, gam1, scale)
        a_max = a
    else:  # the number of kept rows is a device value: a is one too (its largest value bounds the factorisation)
        kept = mask.sum().to(torch.float64)
        a = gram_scale(kept, d, eps, gam1, scale).to(work)
        a_max = max(gram_scale(1, d, eps, gam1, scale), gram_scale(n, d, eps, gam1, scale))
    with torch.autocast(device_type=z.device.type, enabled=False), full_float32_matmul():
        z = z.to(work)
        if mask is not None:
            z = z * mask.to(work)[:, None]
        gram = z @ z.T if n <= d else z.T @ z
        m = torch.eye(gram.shape[0], dtype=work, device=z.device) + a * gram
        order = gram.shape[0]
        if work == torch.float64 or cholesky_cannot_fail(order, 1 + a_max * (1 if n <= d else n), work):
            chol, _ = torch.linalg.cholesky_ex(m)
            return torch.log(torch.diagonal(chol)).sum()  # 1/2 logdet(M) = sum log diag(L), M = L L^T
        return _with_float64_fallback(m)


def _with_float64_fallback(m: torch.Tensor) -> torch.Tensor:
    """sum log diag(chol(M)): float32 where its factorisation succeeds, else float64, chosen on the device. Each
    factorisation sees M only where it is the one taken (the identity otherwise), so no gradient passes through a
    failed factor."""
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    finite = torch.isfinite(m).all()
    ok = (torch.linalg.cholesky_ex(m.detach()).info == 0) | ~finite  # non-finite input: float32's NaN, as before
    single, _ = torch.linalg.cholesky_ex(torch.where(ok, m, eye))
    double, _ = torch.linalg.cholesky_ex(torch.where(ok, eye.double(), m.double()))
    as_single = torch.log(torch.diagonal(single)).sum()
    return torch.where(ok, as_single, torch.log(torch.diagonal(double)).sum().to(m.dtype))
