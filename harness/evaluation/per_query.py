"""A run's per-query test values on disk: ``per_query_test.npz`` in the run directory, named in the record.

Three arrays, one entry per scored test query in the split's order: ``label`` (its class), ``ap_at_r`` and
``hit_at_1``. Their means are the record's ``test/map@r`` and ``test/recall@1``; the tables resample whole
classes of them for the test-set interval of two runs on the same test set (harness.tables.stats). The file is
written atomically (harness.io) and read without pickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.evaluation.retrieval import PerQuery
from harness.io import atomic_write

FILE = "per_query_test.npz"
RECORD_KEY = "per_query_file"  # the record names the file (relative to the run directory; text, no metric)


def save_per_query(run_dir: Path, per_query: PerQuery | None) -> dict:
    """Write the file (rank 0); the record keys that name it ({} when there is nothing to write)."""
    if per_query is None:
        return {}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, label=per_query.label, ap_at_r=per_query.ap_at_r, hit_at_1=per_query.hit_at_1)

    atomic_write(Path(run_dir) / FILE, write)
    return {RECORD_KEY: FILE}


def load_per_query(path: Path) -> PerQuery:
    """The arrays of one file; ``ValueError`` when it is not a consistent per-query file."""
    with np.load(path, allow_pickle=False) as z:
        try:
            label, ap, hit = z["label"], z["ap_at_r"], z["hit_at_1"]
        except KeyError as err:
            raise ValueError(f"{path} is not a per-query file (no {err})") from None
    if not (label.ndim == ap.ndim == hit.ndim == 1 and len(label) == len(ap) == len(hit)):
        raise ValueError(f"{path}: label, ap_at_r and hit_at_1 differ in shape")
    return PerQuery(label.astype(np.int64), ap.astype(np.float64), hit.astype(bool))
