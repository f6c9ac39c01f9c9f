"""Spectrum: the singular values of the L2-normalised test embeddings, the untrained network against the
trained one, and against the trained runs that differ from this run only in the regularizer (e.g. a sweep's
``regularizer=none`` and ``regularizer=antico_pair`` runs of the same seed) where they exist. A collapsed
embedding puts its energy in few directions: its normalised spectrum falls steeply. Each legend entry gives
the coding rate R (the collapse diagnostic ``diag/test/coding_rate``, eps = 0.5)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from harness.errors import ConfigError
from harness.evaluation.diagnostics import coding_rate_of, normalize_rows
from harness.inspect.style import new_figure, save
from harness.models.reload import load_run
from harness.rundir import identity
from harness.rundir.run_dir import RunDir

log = logging.getLogger(__name__)


def singular_values(z) -> np.ndarray:
    z = torch.as_tensor(normalize_rows(z))
    return torch.linalg.svdvals(z).numpy()


def regularizer_siblings(run_dir: Path, limit: int = 3) -> list:
    """Finished runs beside ``run_dir`` whose config differs only in the regularizer (same seed too)."""
    run_dir = Path(run_dir)
    cfg = RunDir.at(run_dir).config()

    def without_regularizer(c):
        return {k: v for k, v in identity.semantic_config(c).items() if k != "regularizer"}, c.get("seed")

    mine = without_regularizer(cfg)
    found = []
    for other in sorted(run_dir.parent.iterdir()):
        if other == run_dir or not (other / "config.yaml").exists() or not (other / "checkpoints" / "best.pt").exists():
            continue
        try:
            other_cfg = RunDir.at(other).config()
        except ConfigError as err:  # a sibling the guard refuses is not drawn
            log.warning("%s", err)
            continue
        if identity.group_choice(other_cfg, "regularizer") == identity.group_choice(cfg, "regularizer"):
            continue
        if without_regularizer(other_cfg) == mine:
            found.append(other)
    return found[:limit]


def plot_spectra(ax, curves) -> None:
    """[(label, embeddings, line style)] as normalised singular-value curves, the coding rate in the legend."""
    for label, z, style in curves:
        s = singular_values(z)
        rate = coding_rate_of(normalize_rows(z))
        ax.plot(np.arange(1, len(s) + 1), s / s.sum(), label=f"{label} (R = {rate:.1f})", **style)
    ax.set_yscale("log")
    ax.set_xlabel("index i of the singular value")
    ax.set_ylabel(r"normalised singular value $\sigma_i\,/\,\Sigma_j\,\sigma_j$")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="test embeddings (R = coding rate)")


def spectrum(inspection, path: Path, device: str = "cpu", siblings: bool = True) -> Path:
    own = identity.group_choice(inspection.config, "regularizer")
    curves = []
    if inspection.untrained is not None:
        curves.append(("untrained (epoch 0)", inspection.untrained.query, dict(color="0.55", linestyle="--")))
    curves.append((f"trained, regularizer={own}", inspection.trained.query, dict(color="C0", linewidth=2.2)))
    for i, other in enumerate(regularizer_siblings(inspection.run_dir) if siblings else []):
        try:
            run = load_run(other, device=device)
        except ConfigError as err:  # a sibling with a damaged best.pt is left out of the picture, named
            log.warning("%s", err)
            continue
        name = identity.group_choice(run.cfg, "regularizer")
        curves.append(
            (f"trained, regularizer={name}", inspection.embed(run.model).query, dict(color=f"C{i + 1}", linewidth=1.6))
        )

    fig = new_figure(5.2, 3.6)
    ax = fig.subplots()
    plot_spectra(ax, curves)
    n, d = inspection.trained.query.shape
    rec = inspection.record
    ax.set_title(
        f"Spectrum of the test embeddings (n = {n}, d = {d})\n"
        f"{rec.get('dataset', '')}, loss={rec.get('loss', '?')}, seed={rec.get('seed', '?')}"
    )
    return save(fig, path)
