"""Collapse diagnostics against brute-force numpy (explicit loops over pairs), closed forms, and the record."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.evaluation import diagnostics as diag


def embeddings(n=40, d=6, classes=4, seed=0, scale_rows=True):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    if scale_rows:  # unnormalised input: the diagnostics L2-normalise it first
        z *= rng.uniform(0.5, 3.0, size=(n, 1))
    return z, rng.integers(0, classes, size=n)


def unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def brute(z, labels, eps=0.5, t=2.0):
    z = unit(np.asarray(z, dtype=np.float64))
    n, d = z.shape
    out = {}
    out["coding_rate"] = 0.5 * np.linalg.slogdet(np.eye(d) + d / (n * eps) * z.T @ z)[1]
    s = np.linalg.svd(z, compute_uv=False)
    p = np.maximum(s / s.sum(), 1e-12)
    out["rho_spectrum"] = sum((1 / len(p)) * math.log((1 / len(p)) / pi) for pi in p)
    intra = []
    for c in np.unique(labels):
        members = z[labels == c]
        if len(members) > 1:
            pairs = [
                np.linalg.norm(a - b) for (i, a), (j, b) in itertools.product(enumerate(members), repeat=2) if i != j
            ]
            intra.append(np.mean(pairs))
    centres = [z[labels == c].mean(axis=0) for c in np.unique(labels)]
    inter = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for j, b in enumerate(centres) if i != j])
    out.update(intra=np.mean(intra), inter=inter, intra_inter_ratio=np.mean(intra) / inter)
    out["uniformity"] = math.log(
        np.mean([math.exp(-t * np.sum((z[i] - z[j]) ** 2)) for i in range(n) for j in range(i + 1, n)])
    )
    return out


@pytest.mark.parametrize("n,d", [(40, 6), (7, 20)])  # n > d (QR path of the spectrum) and n < d
def test_every_diagnostic_matches_brute_force(n, d):
    z, labels = embeddings(n, d)
    got = diag.collapse_diagnostics(z.astype(np.float32), labels)
    want = brute(z.astype(np.float32), labels)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["coding_rate_eps"] == diag.DIAGNOSTIC_EPS


def test_chunked_and_subsampled_paths_agree_with_brute_force(monkeypatch):
    z, labels = embeddings(50, 5, classes=3, seed=1)
    monkeypatch.setattr(diag, "CHUNK", 7)  # many row chunks, a last partial one
    got = diag.collapse_diagnostics(z, labels)
    want = brute(z, labels)
    for key in ("uniformity", "intra", "inter"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    # above the cap, uniformity is that of a seeded subsample of the cap's size
    monkeypatch.setattr(diag, "MAX_UNIFORMITY_SAMPLES", 20)
    keep = np.random.default_rng(0).choice(50, 20, replace=False)
    assert diag.uniformity(unit(z)) == pytest.approx(brute(z[keep], labels[keep])["uniformity"], rel=1e-9)


def test_closed_forms_of_collapsed_and_spread_embeddings():
    d, eps = 8, diag.DIAGNOSTIC_EPS
    collapsed = np.tile(np.eye(d)[:1] * 3.0, (30, 1))  # every embedding the same direction
    labels = np.arange(30) % 3
    c = diag.collapse_diagnostics(collapsed, labels)
    assert c["coding_rate"] == pytest.approx(0.5 * math.log(1 + d / eps))
    assert c["uniformity"] == 0.0 and c["intra"] == 0.0 and c["inter"] == 0.0
    assert math.isnan(c["intra_inter_ratio"])
    assert math.isfinite(c["rho_spectrum"]) and c["rho_spectrum"] > 20  # one singular value out of d
    spread = np.vstack([np.eye(d), -np.eye(d)])  # orthonormal directions: a flat spectrum, the largest R for n = 2d
    s = diag.collapse_diagnostics(spread, np.arange(2 * d))
    assert s["rho_spectrum"] == pytest.approx(0.0, abs=1e-12)
    assert s["coding_rate"] == pytest.approx(d / 2 * math.log(1 + 1 / eps))
    assert math.isnan(s["intra"])  # no class with two samples


def test_diagnostics_rank_collapse_over_a_spread_set():
    rng = np.random.default_rng(2)
    spread = rng.normal(size=(200, 16))
    low_rank = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 16))
    labels = rng.integers(0, 5, size=200)
    a, b = diag.collapse_diagnostics(spread, labels), diag.collapse_diagnostics(low_rank, labels)
    assert a["coding_rate"] > b["coding_rate"] and a["rho_spectrum"] < b["rho_spectrum"]
    assert a["uniformity"] < b["uniformity"]


def test_the_same_bits_at_any_thread_count():
    """A resumed run, or a SLURM job given other cores, must record the same diagnostics: LAPACK's QR and SVD
    sum in another order on two threads (the spectrum of a 900 x 64 set differed in its last bit)."""
    import torch

    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(900, 64)).astype(np.float32), rng.integers(0, 5, 900)
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(diag.collapse_diagnostics(z, labels))
            assert torch.get_num_threads() == threads  # and the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)
    assert runs[0] == runs[1]
