"""Pictures of a finished run: ``python -m harness.inspect RUN_DIR`` writes PNGs into ``RUN_DIR/pictures/``.

* ``retrieval_grid.png``: test queries with their top-k results, green / red frames for same / other class;
  the worst queries by AP@R and a seeded random sample, with class names (digits: the 8x8 images).
* ``embedding_map.png``: UMAP of the test embeddings coloured by class, untrained beside trained.
* ``spectrum.png``: singular values of the test embeddings, untrained, trained, and the trained runs that
  differ only in the regularizer; the coding rate in the legend.

The trained network is the selected epoch (``checkpoints/best.pt``), the untrained one the same architecture
seeded as the run seeded it. Runs with ``eval.pictures=true`` draw them at the end and hand them to the trackers;
a run of a multirun draws the cheap ones (grid, spectrum: the UMAP map costs minutes on a busy CPU, for every run
of a sweep) and its comparison with its baseline (``harness.inspect.compare``).
``python -m harness.inspect RUN_A RUN_B`` (or ``RUN --baseline``) draws two runs side by side.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.errors import ConfigError
from harness.inspect.loading import inspection_of, load_inspection
from harness.rundir.identity import group_choice
from harness.tracking.naming import SweepContext

PICTURES = ("retrieval_grid", "embedding_map", "spectrum")
log = logging.getLogger(__name__)


def pictures_wanted(setting, vector_inputs: bool) -> bool:
    """``eval.pictures``: auto draws them for image datasets (a vector dataset such as digits trains in seconds
    on a CPU, where a UMAP map would double the run), true / false for every dataset."""
    return (not vector_inputs) if setting == "auto" else bool(setting)


def pictures_at_end(run_dir, parts, fitted, map_method: str = "umap", in_sweep: bool | None = None) -> list:
    """The pictures of a run that has just finished in this process, from its parts (data, evaluator) and the
    embeddings ``fit`` made (``fitted``); failing to draw them costs one warning, never the run. In a sweep
    (``in_sweep``, by default: a Hydra multirun) only the cheap pictures, and the comparison with its baseline
    when the other of the two has finished first. Returns the run's own pictures (for the trackers)."""
    try:
        in_sweep = SweepContext.current().multirun is not None if in_sweep is None else in_sweep
        inspection = inspection_of(run_dir, parts, fitted.test, fitted.init_test)
        only = ("retrieval_grid", "spectrum") if in_sweep else PICTURES
        own = make_pictures(run_dir, device=str(parts.device), map_method=map_method, inspection=inspection, only=only)
        if in_sweep:
            comparisons_at_end(inspection, str(parts.device))
        return own
    except Exception as err:
        log.warning(
            "pictures not drawn (%s: %s); draw them later with python -m harness.inspect %s",
            type(err).__name__,
            str(err).splitlines()[0] if str(err) else "",
            run_dir,
        )
        return []


def comparisons_at_end(inspection, device: str) -> list:
    """A regularized run beside its finished baseline (or a baseline beside its finished regularized runs): the
    cheap comparison pictures, drawn into this run's own ``pictures/compare_<other run>/`` (one writer per run
    directory: of two runs, the one that finishes second draws)."""
    # lazy: the picture modules bring matplotlib; every run imports this package, most draw nothing
    from harness.inspect.compare import CHEAP, compare_runs, finished_siblings

    run_dir = Path(inspection.run_dir)
    mine = group_choice(inspection.config, "regularizer")
    written = []
    for other, theirs in finished_siblings(run_dir):
        if "none" not in (mine, theirs):
            continue
        a, b, of = (run_dir, other, "a") if mine == "none" else (other, run_dir, "b")
        out = run_dir / "pictures" / f"compare_{other.name}"
        written += compare_runs(a, b, out, device, only=CHEAP, inspection=inspection, inspection_of=of)
    return written


def make_pictures(
    run_dir,
    out=None,
    device: str = "cpu",
    only=PICTURES,
    map_method: str = "umap",
    k: int = 8,
    n_worst: int = 4,
    n_random: int = 4,
    max_points: int = 3000,
    seed: int | None = None,
    inspection=None,
) -> list:
    """Draw the pictures of one run (from ``inspection`` when given, else loaded from ``run_dir``); return the
    paths written."""
    unknown = [p for p in only if p not in PICTURES]
    if unknown:
        raise ConfigError(f"unknown picture {unknown[0]!r}; choose from {', '.join(PICTURES)}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "pictures"
    needs_untrained = any(p in only for p in ("embedding_map", "spectrum"))
    if inspection is None:
        inspection = load_inspection(run_dir, device=device, untrained=needs_untrained)
    seed = int(inspection.config.seed) if seed is None else int(seed)
    metric = str(inspection.config.eval.get("metric", "ip"))
    written = []
    if "retrieval_grid" in only:
        # lazy: matplotlib, as above
        from harness.inspect.grid import retrieval_grid

        written.append(
            retrieval_grid(
                inspection,
                out / "retrieval_grid.png",
                k=k,
                n_worst=n_worst,
                n_random=n_random,
                seed=seed,
                metric=metric,
            )
        )
    if "embedding_map" in only:
        # lazy: matplotlib, as above
        from harness.inspect.embedding_map import embedding_map

        written.append(
            embedding_map(inspection, out / "embedding_map.png", method=map_method, max_points=max_points, seed=seed)
        )
    if "spectrum" in only:
        # lazy: matplotlib, as above
        from harness.inspect.spectrum import spectrum

        written.append(spectrum(inspection, out / "spectrum.png", device=device))
    return written
